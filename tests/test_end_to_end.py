"""The whole loop on the bundled demo, through the console scripts, the real collector and
real Chromium: two annotators (one with the collector down for a while), disagreement,
refinement with comments, final labels, evaluation and the report."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, CollectorProcess, StaticServer, free_port

BIN = Path(sys.executable).parent
DEMO = REPO / "demo"
pytestmark = [pytest.mark.browser, pytest.mark.slow]


def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=600)
    if ok:
        assert result.returncode == 0, f"{args[:2]} failed:\n{result.stdout}\n{result.stderr}"
    return result


def links(private: Path) -> dict[tuple[str, str], str]:
    with (private / "links.csv").open(newline="") as fh:
        return {(r["annotator"], r["stage"]): r["url"] for r in csv.DictReader(fh)}


def manifest_batch(site: Path, stage: str) -> list[dict]:
    data = json.loads((site / "manifest.json").read_text())
    [batch] = data["stages"][stage]["batches"]
    return batch["images"]


def toggle(page, shown: list[int], label: int, group_size: int = 5) -> None:
    """Tick or untick `label` with the keyboard: switch to its group (→), press its number."""
    position = shown.index(label)
    groups = page.locator("[role=tab]").count()
    current = page.eval_on_selector_all("[role=tab]", "tabs => tabs.findIndex(t => t.getAttribute('aria-selected') === 'true')")
    for _ in range((position // group_size - current) % groups):
        page.keyboard.press("ArrowRight")
    page.keyboard.press(str(position % group_size + 1))


def annotate(page, images: list[dict], choices: dict[str, list[int]], after_each=None) -> None:
    """Go through a batch from its first page, choosing the labels given per image key."""
    page.click("#continue")
    for number, image in enumerate(images, start=1):
        page.wait_for_url(f"**/{Path(image['page']).name}")
        for label in choices[image["key"]]:
            toggle(page, image["shown"], label)
        page.keyboard.press("Enter")
        if number < len(images):
            page.wait_for_url(f"**/{Path(images[number]['page']).name}")
        if after_each:
            after_each(number)


def test_demo_end_to_end(chromium, tmp_path: Path, artifacts_dir: Path) -> None:
    work = tmp_path
    site, private, store = work / "site", work / "private", work / "submissions.jsonl"
    proposals = work / "proposals.parquet"

    # stage 1 and 2: proposals and the site, hosted apart from the collector (as on GitHub Pages)
    cli("multilabelfy-build", "propose", "--data", str(DEMO / "data"), "--model", "test_vit",
        "--random-weights", "--top-k", "20", "--out", str(proposals))
    site.mkdir()
    static = StaticServer(site)
    port = free_port()
    cli("multilabelfy-build", "pages", "--proposals", str(proposals), "--data", str(DEMO / "data"),
        "--exemplars", str(DEMO / "exemplars"), "--annotators", "alice,bob", "--batches", "1",
        "--per-batch", "2", "--collector-url", f"http://127.0.0.1:{port}", "--site-url", static.base,
        "--out", str(site), "--private", str(private))
    collector = CollectorProcess(site, private, store, port, "--allow-origin", static.base).start()
    try:
        images = manifest_batch(site, "annotate")
        assert len(images) == 11
        labels = {row["key"]: int(row["label"]) for row in csv.DictReader((private / "images.csv").open())}
        # everyone ticks the original label; alice adds a label on image A, bob misses the original on B
        image_a, image_b = images[0], images[1]
        extra_a = next(c for c in image_a["shown"] if c != labels[image_a["key"]])
        other_b = next(c for c in image_b["shown"] if c != labels[image_b["key"]])
        alice = {im["key"]: [labels[im["key"]]] for im in images}
        alice[image_a["key"]] = [labels[image_a["key"]], extra_a]
        bob = {im["key"]: [labels[im["key"]]] for im in images}
        bob[image_b["key"]] = [other_b]
        url = links(private)

        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url[("alice", "annotate")])
        annotate(page, images, alice)
        context.close()

        # bob: the collector goes down after his 4th answer and comes back after his 7th
        def outage(number: int) -> None:
            if number == 4:
                page.wait_for_function("document.getElementById('queue').hidden")
                assert collector.stop() == 0
            if number == 7:
                page.wait_for_function("!document.getElementById('queue').hidden")
                assert "3" in page.inner_text("#queued")
                page.screenshot(path=str(artifacts_dir / "e2e_queued_while_collector_down.png"))
                collector.start()

        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url[("bob", "annotate")])
        annotate(page, images, bob, after_each=outage)
        page.wait_for_function("localStorage.getItem('mlf:annotate:1:queue') === '[]'", timeout=30000)
        context.close()

        records = [json.loads(line) for line in store.read_text().splitlines()]
        assert len(records) == 22 and len({r["id"] for r in records}) == 22
        got = {(r["annotator"], r["image"]): sorted(r["labels"]) for r in records}
        for key in labels:
            assert got[("alice", key)] == sorted(alice[key]) and got[("bob", key)] == sorted(bob[key])

        # stage 3: disagreement finds exactly the two images
        cli("multilabelfy-analyze", "disagreement", "--site", str(site), "--private", str(private),
            "--store", str(store), "--out", str(work / "disagreement"))
        with (work / "disagreement" / "disagreement.csv").open(newline="") as fh:
            status = {r["key"]: r["status"] for r in csv.DictReader(fh)}
        assert status[image_a["key"]] == "disagreed" and status[image_b["key"]] == "disagreed"
        assert sum(s == "agreed" for s in status.values()) == 9

        # stage 4: refinement pages; the running collector picks up the new stage
        cli("multilabelfy-analyze", "refine", "--site", str(site), "--private", str(private),
            "--store", str(store), "--refiners", "carol")
        refine_images = manifest_batch(site, "refine")
        assert {im["key"] for im in refine_images} == {image_a["key"], image_b["key"]}
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(links(private)[("carol", "refine")])
        page.click("#continue")
        for number, image in enumerate(refine_images, start=1):
            page.wait_for_url(f"**/{Path(image['page']).name}")
            checked = set(page.eval_on_selector_all("input[name=l]:checked", "els => els.map(e => +e.value)"))
            assert checked == set(image["prechecked"]), "earlier choices are pre-checked"
            if image["key"] == image_a["key"]:
                assert checked == {labels[image_a["key"]], extra_a}
                toggle(page, image["shown"], extra_a)        # carol removes alice's extra label
                page.keyboard.press("Enter")
                page.wait_for_function("document.getElementById('error').textContent.includes('comment')")
                assert page.url.endswith(Path(image["page"]).name), "no change without a comment"
                page.fill("#comment", "only the original label fits")
                page.click("button[type=submit]")
            else:
                assert checked == {labels[image_b["key"]], other_b}
                page.screenshot(path=str(artifacts_dir / "e2e_refine_page.png"))
                page.keyboard.press("Enter")                 # keeps both: no comment needed
            if number < len(refine_images):
                page.wait_for_url(f"**/{Path(refine_images[number]['page']).name}")
        page.wait_for_function("localStorage.getItem('mlf:refine:1:queue') === '[]'", timeout=30000)
        context.close()
        assert not errors, errors
    finally:
        collector.stop()
        static.close()

    # final labels, evaluation and the report
    labels_dir = work / "labels"
    cli("multilabelfy-analyze", "finalize", "--site", str(site), "--private", str(private),
        "--store", str(store), "--out", str(labels_dir))
    order = [row["key"] for row in csv.DictReader((private / "images.csv").open())]
    final = json.loads((labels_dir / "real_labels.json").read_text())
    expected = {key: [labels[key]] for key in order}
    expected[image_b["key"]] = sorted([labels[image_b["key"]], other_b])
    assert [sorted(x) for x in final] == [sorted(expected[key]) for key in order]
    with (labels_dir / "labels.csv").open(newline="") as fh:
        rows = {r["key"]: r for r in csv.DictReader(fh)}
    assert rows[image_a["key"]]["status"] == "refined" and rows[order[-1]]["status"] in ("agreed", "refined")

    cli("multilabelfy-analyze", "evaluate", "--labels", str(labels_dir), "--predictions", str(proposals),
        "--out", str(work / "evaluation"))
    cli("multilabelfy-analyze", "report", "--labels", str(labels_dir), "--evaluation", str(work / "evaluation"),
        "--disagreement", str(work / "disagreement"), "--images", str(DEMO / "data"), "--out", str(work / "report"))
    report = work / "report" / "index.html"
    page = chromium.new_page(viewport={"width": 1200, "height": 900})
    page.goto(report.as_uri())
    text = page.inner_text("body")
    assert "11" in text and "Refinement" in text or "refinement" in text
    assert page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    page.screenshot(path=str(artifacts_dir / "e2e_report.png"), full_page=True)
    page.close()
