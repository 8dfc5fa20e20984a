"""Stage 4a: choosing and splitting the images to refine, and the real refinement pages
(rendered by build.site from a real-photo dataset), through to final labels."""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import write_photo_dataset
from test_disagreement import IMAGENETV2, expected_statuses

from multilabelfy.analysis import disagreement, inputs, refine, simulate
from multilabelfy.analysis.cli import main
from multilabelfy.build import access, site
from multilabelfy.build.catalog import load_catalog
from multilabelfy.build.datasets import open_dataset
from multilabelfy.collector import formats
from multilabelfy.collector.clitools import UserError


def test_split_is_even_deterministic_and_cycles_refiners() -> None:
    rows = list(range(6425))  # the paper: 6,425 images over 5 refiners
    batches = refine.split(rows, ["a", "b", "c", "d", "e"])
    assert [len(r) for _, r in batches.values()] == [1285] * 5
    assert [p for p, _ in batches.values()] == [["a"], ["b"], ["c"], ["d"], ["e"]]
    assert sorted(x for _, r in batches.values() for x in r) == rows
    assert refine.split(rows, ["a", "b", "c", "d", "e"]) == batches

    two = refine.split(list(range(100)), ["a", "b", "c"], per_image=2)
    assert [p for p, _ in two.values()] == [["a", "b"], ["b", "c"], ["c", "a"]]
    load = Counter(person for people, r in two.values() for person in people for _ in r)
    assert max(load.values()) - min(load.values()) <= 2 and sum(load.values()) == 200
    with pytest.raises(UserError, match="--per-image 4"):
        refine.split(rows, ["a", "b", "c"], per_image=4)


def test_selection_and_page_specs(tmp_path: Path) -> None:
    truth = simulate.imagenetv2_truth(IMAGENETV2, step=25)
    project = simulate.project(tmp_path, truth, batches=2, annotators=("alice", "bob"), miss=0.15, extra=0.01,
                               skip=0.05, seed=2)
    result = disagreement.analyse(inputs.load_inputs(project.site, project.private, project.store))
    statuses = expected_statuses(project)
    picked = [project.truth.keys[r] for r in refine.select(result)]
    assert picked == [k for k in project.truth.keys if statuses[k] in ("disagreed", "original-missing")]
    with_incomplete = [project.truth.keys[r] for r in refine.select(result, include_incomplete=True)]
    assert set(with_incomplete) - set(picked) == {k for k, s in statuses.items() if s == "incomplete"}

    latest = formats.latest_records(formats.read_store(project.store)[0])
    shown_of = {p.key: list(p.shown) for pages in project.manifest.stages["annotate"].values() for p in pages}
    batch_of = {p.key: b for b, pages in project.manifest.stages["annotate"].items() for p in pages}
    specs = refine.page_specs(result, refine.select(result, include_incomplete=True))
    for spec in specs:
        answers = [latest.get(("annotate", spec.key, w)) for w in project.assignments[batch_of[spec.key]]]
        given = [a for a in answers if a is not None]
        chosen = Counter(c for a in given for c in a["labels"])
        assert spec.prechecked == sorted(chosen)  # chosen by any first-stage annotator
        assert spec.shown[:len(shown_of[spec.key])] == shown_of[spec.key] and set(chosen) <= set(spec.shown)
        assert spec.votes == {c: f"{n} of {len(given)}" for c, n in chosen.items()}
        assert spec.comment_required_on_change
        nones = [a for a in given if a.get("none")]
        assert sum("none of these labels fit" in n for n in spec.notes) == len(nones)
        assert sum("has not answered" in n for n in spec.notes) == len(answers) - len(given)
        for a in nones:
            assert any(formats.NONE_REASONS[a["reason"]] in n for n in spec.notes)


def _annotated_photo_site(tmp_path: Path):
    """A real annotate stage rendered by build.site from real photos, plus build.json and links."""
    data = tmp_path / "data"
    labels = write_photo_dataset(data, per_class=2)
    catalog = load_catalog("imagenet-1k")
    dataset = open_dataset(data, num_classes=len(catalog))
    rng = np.random.default_rng(0)
    shown = {s.key: list(dict.fromkeys([s.label, *rng.choice(1000, 30).tolist()]))[:20] for s in dataset}
    keys = [s.key for s in dataset]
    specs = {1: [site.PageSpec(k, shown[k]) for k in keys[::2]], 2: [site.PageSpec(k, shown[k]) for k in keys[1::2]]}
    options = site.SiteOptions(workers=1, image_max_side=128)
    site_dir, private = tmp_path / "site", tmp_path / "private"
    site.render_stage(site_dir, "annotate", specs, catalog=catalog, dataset=dataset, exemplar_dir=None,
                      collector_url="http://127.0.0.1:9", options=options, progress=False)
    private.mkdir()
    access.save_images_csv(private, [(s.key, s.label) for s in dataset])
    assignments = {1: ["alice", "bob"], 2: ["alice", "bob"]}
    access.save_assignments(private, "annotate", assignments)
    access.issue_links(private, [(a, "annotate", b) for b, people in assignments.items() for a in people])
    access.save_build_settings(private, {"data": str(data), "catalog": "imagenet-1k", "exemplars": None,
                                         "collector_url": "http://127.0.0.1:9", "site_url": "",
                                         "options": options.to_json()})
    return site_dir, private, labels, shown, specs, keys


def test_refine_command_renders_pages_and_issues_links(tmp_path: Path, capsys) -> None:
    site_dir, private, labels, shown, specs, keys = _annotated_photo_site(tmp_path)  # keys: dataset order
    batch_of = {s.key: b for b, ss in specs.items() for s in ss}
    store = tmp_path / "submissions.jsonl"
    other = {k: next(c for c in shown[k] if c != labels[k]) for k in keys}
    records, n = [], 0
    for i, key in enumerate(keys):
        alice = [labels[key]]
        bob = [labels[key]] if i % 3 == 0 else [labels[key], other[key]] if i % 3 == 1 else []
        for who, chosen in (("alice", alice), ("bob", bob)):
            extra = {"comment": 'looks like <script>alert("x")</script> & more'} if who == "bob" and i == 1 else {}
            record = simulate.record("annotate", batch_of[key], key, who, chosen, shown[key], n,
                                     reason="needs-expert" if not chosen else None, **extra)
            records.append(record)
            n += 1
    simulate.write_records(store, records)
    links_before = (private / "links.csv").read_text()

    args = ["refine", "--site", str(site_dir), "--private", str(private), "--store", str(store)]
    assert main(args + ["--refiners", "carol,erin"]) == 0
    assert "carol: " in capsys.readouterr().out

    manifest = formats.load_manifest(site_dir)
    to_refine = [k for i, k in enumerate(keys) if i % 3 != 0]
    refine_pages = manifest.stages["refine"]
    assert [p.key for p in refine_pages[1]] == to_refine[0::2] and [p.key for p in refine_pages[2]] == to_refine[1::2]
    for page in refine_pages[1] + refine_pages[2]:
        i = keys.index(page.key)
        assert list(page.shown[:len(shown[page.key])]) == shown[page.key]
        assert sorted(page.prechecked) == sorted({labels[page.key], other[page.key]} if i % 3 == 1 else {labels[page.key]})
        assert (site_dir / page.page).is_file()
    assert inputs.read_assignments(private)["refine"] == {1: ["carol"], 2: ["erin"]}

    links = list(csv.DictReader((private / "links.csv").open()))
    assert (private / "links.csv").read_text().startswith(links_before.rstrip("\n").split("\n")[0])
    assert {(r["annotator"], r["stage"], r["batch"]) for r in links if r["stage"] == "refine"} == {
        ("carol", "refine", "1"), ("erin", "refine", "2")}
    assert sum(r["stage"] == "annotate" for r in links) == 4 and all(r["url"] in links_before for r in links
                                                                       if r["stage"] == "annotate")
    grants = formats.load_tokens(private)
    for row in links:
        grant = grants[formats.token_hash(row["url"].split("#token=")[1])]
        assert (grant.annotator, grant.stage, grant.batch) == (row["annotator"], row["stage"], int(row["batch"]))
        assert row["url"].split("#token=")[1] not in "".join(p.read_text(errors="ignore")
                                                             for p in site_dir.rglob("*.html"))

    page_of = {p.key: p for p in refine_pages[1] + refine_pages[2]}
    html = (site_dir / page_of[keys[1]].page).read_text()
    assert "2 of 2" in html and "1 of 2" in html and "Annotator 2 commented" in html
    assert "&lt;script&gt;" in html and '<script>alert("x")' not in html
    html = (site_dir / page_of[keys[2]].page).read_text()
    assert formats.NONE_REASONS["needs-expert"] in html

    # the same split again: allowed, nothing re-issued; a different one needs --replace
    assert main(args + ["--refiners", "carol,erin"]) == 0
    assert list(csv.DictReader((private / "links.csv").open())) == links
    assert main(args + ["--refiners", "carol,erin,frank"]) == 2
    assert "--replace" in capsys.readouterr().err
    assert formats.load_manifest(site_dir).stages["refine"] == refine_pages

    # the refiners answer (a comment wherever they change the pre-checked set), then finalize
    refiners = {1: "carol", 2: "erin"}
    answers = []
    for b, pages in refine_pages.items():
        for page in pages:
            final = [labels[page.key]]
            comment = "" if set(final) == set(page.prechecked) else "only the original fits"
            answers.append(simulate.record("refine", b, page.key, refiners[b], final, page.shown, n, comment=comment))
            n += 1
    simulate.write_records(store, answers)
    out = tmp_path / "labels"
    assert main(["finalize", "--site", str(site_dir), "--private", str(private), "--store", str(store),
                 "--out", str(out)]) == 0
    assert json.loads((out / "real_labels.json").read_text()) == [[labels[k]] for k in keys]
    statuses = [r["status"] for r in csv.DictReader((out / "labels.csv").open())]
    assert statuses == ["agreed" if i % 3 == 0 else "refined" for i in range(len(keys))]


@pytest.mark.browser
def test_refine_page_in_chromium_prechecks_and_asks_for_a_comment(tmp_path: Path, chromium, artifacts_dir) -> None:
    """The rendered refine page, in a real browser: first-stage choices ticked with their votes,
    a changed set is refused without a comment, and with one the record (comment included) is
    queued for the collector (which is down here)."""
    site_dir, private, labels, shown, specs, keys = _annotated_photo_site(tmp_path)
    batch_of = {s.key: b for b, ss in specs.items() for s in ss}
    key = keys[0]
    other = next(c for c in shown[key] if c != labels[key])
    store = tmp_path / "submissions.jsonl"
    simulate.write_records(store, [
        simulate.record("annotate", batch_of[key], key, "alice", [labels[key], other], shown[key], 1),
        simulate.record("annotate", batch_of[key], key, "bob", [labels[key]], shown[key], 2, comment="only one")])
    assert main(["refine", "--site", str(site_dir), "--private", str(private), "--store", str(store),
                 "--refiners", "carol"]) == 0
    page = formats.load_manifest(site_dir).stages["refine"][1][0]
    token = next(r for r in csv.DictReader((private / "links.csv").open()) if r["stage"] == "refine")["url"]
    token = token.split("#token=")[1]

    browser_page = chromium.new_page()
    try:
        browser_page.goto((site_dir / page.page).resolve().as_uri() + "#token=" + token)
        ticked = browser_page.eval_on_selector_all("input[name=l]:checked", "els => els.map(e => +e.value)")
        assert sorted(ticked) == sorted(page.prechecked) == sorted([labels[key], other])
        votes = browser_page.eval_on_selector_all(".votes", "els => els.map(e => e.textContent.trim())")
        assert sorted(votes) == ["1 of 2", "2 of 2"]
        assert "only one" in browser_page.inner_text("body")
        browser_page.uncheck(f"input[name=l][value='{other}']", force=True)
        browser_page.click("#submit")
        assert "comment" in browser_page.inner_text("#error").lower()
        queued = 'JSON.parse(localStorage.getItem("mlf:refine:1:queue") || "[]")'
        assert browser_page.evaluate(queued) == []
        browser_page.fill("#comment", "the second label is wrong")
        browser_page.click("#submit")
        browser_page.wait_for_function(f"{queued}.length === 1")
        record = browser_page.evaluate(queued)[0]
        assert record["labels"] == [labels[key]] and record["comment"] == "the second label is wrong"
        assert record["stage"] == "refine" and record["shown"] == page.shown_hash
        browser_page.screenshot(path=str(artifacts_dir / "refine_page.png"))
    finally:
        browser_page.close()
