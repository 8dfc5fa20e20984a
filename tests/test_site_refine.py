"""The renderer's second use: refinement pages (pre-checked labels, votes, notes, required comment),
a second stage in manifest.json, and links appended without invalidating the first stage's."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import PHOTOS
from test_site import EXTRA_CLASSES, build_site, make_inputs, parse_page, snapshot
from test_pages_browser import StubCollector, free_port

POOL = sorted(set(PHOTOS.values()) | set(EXTRA_CLASSES))


@pytest.fixture(scope="module")
def refined(tmp_path_factory):
    from multilabelfy.build import access, site
    from multilabelfy.build.catalog import load_catalog
    from multilabelfy.build.datasets import open_dataset
    from multilabelfy.collector import formats

    tmp = tmp_path_factory.mktemp("refine")
    paths = make_inputs(tmp, per_class=1)
    port = free_port()
    build_site(paths, collector=f"http://127.0.0.1:{port}")
    before_links = (paths["private"] / "links.csv").read_text()
    before_manifest = formats.load_manifest(paths["site"])
    settings = access.load_build_settings(paths["private"])
    catalog = load_catalog(settings["catalog"])
    dataset = open_dataset(settings["data"], layout=settings["layout"], num_classes=len(catalog),
                           class_ids=catalog.ids)
    annotate = before_manifest.stages["annotate"]
    specs = []
    for im in annotate[1][:3]:
        extra = next(c for c in POOL if c not in im.shown)   # a label chosen outside the top K
        shown = list(im.shown) + [extra]
        specs.append(site.PageSpec(key=im.key, shown=shown, prechecked=[shown[2], extra],
                                   votes={shown[2]: "2 of 2", extra: "1 of 2"},
                                   notes=["Annotator 1 commented: <i>maybe</i> a & b",
                                          "Annotator 2: none of these labels fit (Needs an expert)."],
                                   comment_required_on_change=True))
    pages = site.render_stage(paths["site"], "refine", {1: specs}, catalog=catalog, dataset=dataset,
                              exemplar_dir=Path(settings["exemplars"]), collector_url=settings["collector_url"],
                              options=site.SiteOptions.from_json(settings["options"]), progress=False)
    access.save_assignments(paths["private"], "refine", {1: ["erin"]})
    links = access.issue_links(paths["private"], [("erin", "refine", 1)], site_url=settings["site_url"])
    return {"paths": paths, "port": port, "specs": specs, "pages": pages, "links": links,
            "before_links": before_links, "before_manifest": before_manifest,
            "render": lambda: site.render_stage(paths["site"], "refine", {1: specs}, catalog=catalog, dataset=dataset,
                                                exemplar_dir=Path(settings["exemplars"]),
                                                collector_url=settings["collector_url"],
                                                options=site.SiteOptions.from_json(settings["options"]),
                                                progress=False)}


def test_refine_stage_added_to_manifest_annotate_kept(refined) -> None:
    from multilabelfy.collector import formats

    manifest = formats.load_manifest(refined["paths"]["site"])
    assert manifest.stages["annotate"] == refined["before_manifest"].stages["annotate"]
    [images] = manifest.stages["refine"].values()
    assert [im.key for im in images] == [s.key for s in refined["specs"]]
    for im, spec in zip(images, refined["specs"]):
        assert list(im.shown) == spec.shown and list(im.prechecked) == spec.prechecked
        assert im.page.startswith("refine/1/") and im.shown_hash == formats.shown_digest("refine", im.key, spec.shown)
    index = (refined["paths"]["site"] / "index.html").read_text()
    assert "refine/1/index.html" in index and "annotate/2/index.html" in index


def test_refine_page_shows_prechecked_votes_and_notes(refined) -> None:
    site_dir = refined["paths"]["site"]
    for im, spec in zip(refined["pages"][1], refined["specs"]):
        page = parse_page(site_dir / im.page)
        boxes = [b for g in page.groups for b in g]
        assert [int(b["value"]) for b in boxes] == spec.shown
        assert [int(b["value"]) for b in boxes if "checked" in b] == sorted(spec.prechecked, key=spec.shown.index)
        text = " ".join(page.text)
        assert "2 of 2" in text and "1 of 2" in text
        assert "<i>maybe</i> a & b" in text and "Needs an expert" in text
        assert "&lt;i&gt;maybe" in (site_dir / im.page).read_text()
        assert json.loads("".join(page.scripts))["requireComment"] is True


def test_links_appended_old_tokens_kept(refined) -> None:
    from multilabelfy.build import access
    from multilabelfy.collector import formats

    private = refined["paths"]["private"]
    text = (private / "links.csv").read_text()
    assert text.startswith(refined["before_links"]), "first-stage links unchanged"
    rows = list(csv.DictReader(text.splitlines()))
    assert len(rows) == 5 and rows[-1]["annotator"] == "erin" and rows[-1]["url"].startswith("refine/1/index.html#token=")
    grants = formats.load_tokens(private)
    for row in rows:
        token = row["url"].split("#token=")[1]
        assert grants[formats.token_hash(token)] == formats.Grant(row["annotator"], row["stage"], int(row["batch"]))
    assignments = json.loads((private / "assignments.json").read_text())
    assert assignments["refine"] == {"1": ["erin"]} and assignments["annotate"]["1"] == ["alice", "bob"]
    # asking again changes nothing: same token, no file rewritten; re-rendering rewrites nothing either
    before = snapshot(private, refined["paths"]["site"])
    again = access.issue_links(private, [("erin", "refine", 1)])
    refined["render"]()
    assert again == refined["links"] and snapshot(private, refined["paths"]["site"]) == before


@pytest.mark.browser
def test_refine_page_requires_a_comment_when_the_set_changes(chromium, refined) -> None:
    site_dir = refined["paths"]["site"]
    stub = StubCollector(refined["port"]).start()
    try:
        context = chromium.new_context(viewport={"width": 1024, "height": 768})
        page = context.new_page()
        page.goto(site_dir.as_uri() + "/" + refined["links"][0].url)
        page.click("#continue")
        page.wait_for_url("**/0001.html")
        spec = refined["specs"][0]
        assert page.locator("input[name=l]:checked").count() == 2
        page.keyboard.press("3")                       # untick the pre-checked third label
        page.keyboard.press("Enter")
        assert "comment" in page.locator("#error").inner_text()
        assert page.evaluate("document.activeElement.id") == "comment"
        assert stub.received == []
        page.fill("#comment", "the third label is wrong")
        page.keyboard.press("Control+Enter")
        page.wait_for_url("**/0002.html")
        [record] = stub.wait(1)
        assert record["stage"] == "refine" and record["labels"] == [spec.prechecked[1]]
        assert record["comment"] == "the third label is wrong"
        # unchanged pre-checked set: no comment needed
        page.keyboard.press("Enter")
        page.wait_for_url("**/0003.html")
        second = stub.wait(2)[1]
        assert second["labels"] == sorted(refined["specs"][1].prechecked, key=refined["specs"][1].shown.index)
        assert second["comment"] == ""
        context.close()
    finally:
        stub.stop()
