"""The results report: numbers from real labels, a full page in Chromium, defensive inputs."""
from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from multilabelfy.analysis.cli import main
from multilabelfy.analysis.labels_io import load_labels
from multilabelfy.analysis.report import heatmap_matrix, read_disagreement
from test_evaluate import MODELS, save_model, synthetic_model
from test_labels_io import ORIGINAL, REFINED, needs_imagenetv2, write_labels_dir

from conftest import write_photo_dataset

pytestmark = pytest.mark.browser

ODD_NAME = "chelsea <img src=x onerror=window.pwned=2>.jpeg"  # must show as text, never run
EMPTY_REASONS = ["low-resolution", "needs-expert", "low-resolution", "unusual-object", ""]


def open_offline(browser, page_path: Path, artifacts: Path, name: str):
    """Open the report from file:// with every other request refused; screenshot it."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    remote: list[str] = []

    def guard(route):
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            remote.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    page.goto(page_path.as_uri())
    page.wait_for_load_state("load")
    page.screenshot(path=str(artifacts / name), full_page=True)
    assert remote == [], f"the report asked the network for {remote}"
    images = page.eval_on_selector_all("img", "els => els.map(e => [e.getAttribute('src'), e.complete, e.naturalWidth])")
    assert images and all(complete and width > 0 for _, complete, width in images), images
    return page, images


@needs_imagenetv2
def test_paper_labels_report_shows_the_papers_numbers(tmp_path: Path, chromium, artifacts_dir: Path, capsys):
    out = tmp_path / "report"
    assert main(["report", "--labels", str(REFINED), "--original", str(ORIGINAL), "--out", str(out)]) == 0
    assert "report written" in capsys.readouterr().out
    page, images = open_offline(chromium, out / "index.html", artifacts_dir, "report_imagenetv2_paper.png")
    rows = page.eval_on_selector_all("#label-count-groups tbody tr",
                                     "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))")
    assert rows == [["0", "129", "1.29%"], ["1", "5,083", "50.83%"], ["2", "2,385", "23.85%"],
                    [">2", "2,403", "24.03%"]]
    assert page.inner_text("#original-pct") == "87.97%"
    assert "129 images (1.29%) have no label" in page.inner_text("#zero-labels")
    notes = page.inner_text("#notes")
    assert "--evaluation" in notes and "--disagreement" in notes  # sections left out, and said so
    assert [src for src, *_ in images] == ["figures/label_counts.png"]
    assert (out / "figures" / "label_counts.svg").read_text().lstrip().startswith("<?xml")
    page.close()


@pytest.fixture
def full_inputs(tmp_path: Path) -> dict[str, Path]:
    """Real photos with final labels, 5 synthetic models' evaluation and a disagreement folder."""
    data = tmp_path / "data"
    originals = write_photo_dataset(data, per_class=3)
    # an awkward file name must come out escaped on the page
    odd_old = data / "281" / "chelsea_2.jpeg"
    odd_old.rename(odd_old.with_name(ODD_NAME))
    originals = {k.replace("chelsea_2.jpeg", ODD_NAME): v for k, v in originals.items()}
    keys = list(originals)
    rng = np.random.default_rng(7)
    sets, status, reasons = [], [], []
    for i, key in enumerate(keys):
        if i % 5 == 2:  # every fifth image (the odd name first): no label fits
            sets.append([])
            reasons.append(EMPTY_REASONS[len([s for s in sets if not s]) - 1])
        elif i == 0:
            sets.append([originals[key], 1, 2])   # the only image with 3 labels: n = 1 for '3'
            reasons.append("")
        else:
            sets.append([originals[key]] + ([int(rng.integers(1000))] if i % 2 else []))
            reasons.append("")
        status.append("refined" if i % 3 == 0 else "agreed")
    sets[-1], status[-1], reasons[-1] = [], "incomplete", ""  # still waiting: left out everywhere
    labels_dir = write_labels_dir(tmp_path / "labels", keys, sets, [originals[k] for k in keys], status, reasons)
    table = load_labels(labels_dir)
    preds = tmp_path / "predictions"
    preds.mkdir()
    files = []
    for seed, (name, error, other) in enumerate(MODELS):
        pkeys, ranked = synthetic_model(table, name, error, other, seed)
        pkeys = [k.split("/", 1)[1] for k in pkeys]  # synthetic_model prefixes the original label
        files.append(str(save_model(preds / f"{name}.parquet", name, pkeys, ranked, table.original)))
    evaluation = tmp_path / "eval"
    assert main(["evaluate", "--labels", str(labels_dir), "--predictions", *files, "--out", str(evaluation)]) == 0
    disagreement = tmp_path / "disagreement"
    disagreement.mkdir()
    statuses = ["agreed", "disagreed", "disagreed", "original-missing", "incomplete", "agreed"]
    with (disagreement / "disagreement.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["key", "batch", "status", "label", "alice", "bob"])
        for i, key in enumerate(keys):
            writer.writerow([key, 1, statuses[i % len(statuses)], originals[key], "1 2", "1"])
    (disagreement / "agreement.json").write_text(json.dumps({
        "exact_match_rate": 0.4167, "mean_jaccard": 0.61, "krippendorff_alpha_masi": 0.532,
        "per_label_alpha": [{"label": 281, "n": 6, "alpha": 0.25}, {"label": 967, "n": 5, "alpha": -0.1},
                            {"label": 12, "n": 4, "alpha": float("nan")}]}).replace("NaN", "null"))
    return {"data": data, "labels": labels_dir, "evaluation": evaluation, "disagreement": disagreement}


def test_full_report_in_chromium(full_inputs: dict[str, Path], tmp_path: Path, chromium, artifacts_dir: Path):
    out = tmp_path / "report"
    title = "Photos <script>window.pwned = 1</script>"
    assert main(["report", "--labels", str(full_inputs["labels"]), "--evaluation", str(full_inputs["evaluation"]),
                 "--disagreement", str(full_inputs["disagreement"]), "--images", str(full_inputs["data"]),
                 "--title", title, "--out", str(out)]) == 0
    page, images = open_offline(chromium, out / "index.html", artifacts_dir, "report_full.png")
    assert page.evaluate("window.pwned") is None and page.inner_text("h1") == title
    table = load_labels(full_inputs["labels"])

    # label counts, computed here from the labels
    counts = Counter(len(s) for s in table.labels)
    shown = dict(page.eval_on_selector_all("#label-count-groups tbody tr",
                                           "rows => rows.map(r => [r.cells[0].innerText, r.cells[2].innerText])"))
    assert shown["0"] == f"{100 * counts[0] / len(table):.2f}%"
    assert shown[">2"] == f"{100 * sum(c for k, c in counts.items() if k > 2) / len(table):.2f}%"
    inside = np.mean([o in s for o, s in zip(table.original, table.labels)])
    assert page.inner_text("#original-pct") == f"{100 * inside:.2f}%"

    # figures: every PNG loaded; thumbnails for all zero-label images, the odd name escaped
    sources = [src for src, *_ in images]
    for figure in ("label_counts", "real_vs_top1", "accuracy_by_label_count", "half_width_by_label_count", "funnel"):
        assert f"figures/{figure}.png" in sources and (out / "figures" / f"{figure}.svg").is_file()
    thumbs = [s for s in sources if s.startswith("thumbs/")]
    assert len(thumbs) == counts[0] == 5
    zero = page.inner_text("#zero-labels")
    assert ODD_NAME in zero and page.locator("#zero-labels img").count() == len(thumbs)
    assert "Low resolution or ambiguous image" in zero and "reason not recorded" in zero
    assert "1 image(s) still waiting" in page.inner_text("#notes")
    assert "incomplete (left out)" in page.inner_text("#final-status")

    # the fit and the heatmap table match the evaluation's files; n <= 1 is missing, not 0
    fit = json.loads((full_inputs["evaluation"] / "fit.json").read_text())
    assert f"{fit['slope']:.4f}" in page.inner_text("#fit")
    missing = page.eval_on_selector_all("#label-count-table td.missing", "cells => cells.map(c => c.innerText)")
    assert missing and all(text in ("n = 0", "n = 1") for text in missing)
    assert page.eval_on_selector_all("#model-table tbody tr", "rows => rows.map(r => r.cells[0].innerText)") == [m[0] for m in MODELS]

    # agreement: statuses counted from the table, funnel images -> sent -> refined
    funnel = page.eval_on_selector_all("#funnel tbody tr", "rows => rows.map(r => r.cells[1].innerText)")
    with (full_inputs["disagreement"] / "disagreement.csv").open() as fh:
        status = Counter(row["status"] for row in csv.DictReader(fh))
    assert len(table) == len(keys_of(full_inputs["labels"])) - 1 and table.waiting == 1
    assert funnel == [str(sum(status.values())), str(status["disagreed"] + status["original-missing"]),
                      str(sum(1 for s in table.status if s == "refined"))]
    stats = page.inner_text("#agreement-stats")
    assert "41.67%" in stats and "0.532" in stats
    alpha_rows = page.eval_on_selector_all("#per-label-alpha tbody tr", "rows => rows.map(r => r.cells[0].innerText)")
    assert alpha_rows == ["967 (espresso)", "281 (tabby)"]  # lowest first, the NaN one dropped
    page.close()


def keys_of(labels_dir: Path) -> list[str]:
    with (labels_dir / "labels.csv").open() as fh:
        return [row["key"] for row in csv.DictReader(fh)]


def test_heatmap_marks_small_cells_missing():
    import pandas as pd

    groups = pd.DataFrame({"model": ["a", "a", "b"], "label_count": ["0", "1", "1"],
                           "n": [1, 40, 0], "accuracy": [0.0, 80.0, float("nan")]})
    matrix = heatmap_matrix(groups, "accuracy", ["a", "b"], ["0", "1"])
    assert np.isnan(matrix[0, 0]) and matrix[0, 1] == 80.0 and np.isnan(matrix[1]).all()


def test_disagreement_folder_is_read_defensively(tmp_path: Path):
    folder = tmp_path / "dis"
    folder.mkdir()
    empty = read_disagreement(folder)
    assert empty.status_counts == {} and empty.agreement is None and len(empty.notes) == 2
    (folder / "agreement.json").write_text("{broken")
    (folder / "disagreement.csv").write_text("key,batch,status\na,1,agreed\nb,1,disagreed\nc,2,disagreed\n")
    partial = read_disagreement(folder)
    assert partial.status_counts == {"disagreed": 2, "agreed": 1}
    assert any("not valid JSON" in n for n in partial.notes)


def test_report_user_errors(tmp_path: Path, capsys):
    labels = write_labels_dir(tmp_path / "labels", ["1/a.jpg"], [[1]], [1])
    for extra, message in [(["--images", str(tmp_path / "nope")], "--images"),
                           (["--evaluation", str(tmp_path)], "models.csv"),
                           (["--disagreement", str(tmp_path / "nope")], "--disagreement")]:
        assert main(["report", "--labels", str(labels), *extra, "--out", str(tmp_path / "out")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert re.search(r"labels .* do not exist",
                     _err(capsys, ["report", "--labels", str(tmp_path / "x.json"), "--out", str(tmp_path / "o")]))


def _err(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


@needs_imagenetv2
def test_report_reads_what_disagreement_and_finalize_write(tmp_path: Path):
    """The real upstream commands on a simulated project, then the report: the numbers agree."""
    import html

    from multilabelfy.analysis import simulate

    truth = simulate.imagenetv2_truth(REFINED.parent, limit=120)
    project = simulate.project(tmp_path / "project", truth, batches=2, per_batch=2, miss=0.1, extra=0.02, skip=0.05)
    where = ["--site", str(project.site), "--private", str(project.private), "--store", str(project.store)]
    assert main(["disagreement", *where, "--out", str(tmp_path / "dis")]) == 0
    assert main(["finalize", *where, "--out", str(tmp_path / "labels"), "--allow-incomplete"]) == 0
    assert main(["report", "--labels", str(tmp_path / "labels"), "--disagreement", str(tmp_path / "dis"),
                 "--out", str(tmp_path / "report")]) == 0
    text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", (tmp_path / "report" / "index.html").read_text())))
    with (tmp_path / "labels" / "labels.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["status"] != "incomplete"]
    single = sum(1 for r in rows if len(r["labels"].split()) == 1)
    assert f"1 {single:,} {100 * single / len(rows):.2f}%" in text
    with (tmp_path / "dis" / "disagreement.csv").open() as fh:
        status = Counter(r["status"] for r in csv.DictReader(fh))
    sent = status["disagreed"] + status["original-missing"]
    assert f"sent to refinement {sent:,} {100 * sent / sum(status.values()):.2f}%" in text
    assert "exact-match rate" in text and "Krippendorff" in text
