"""Record checks without a server: every rule of docs/formats.md, and the reloading sources."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from multilabelfy.collector import formats
from multilabelfy.collector.formats import Grant, Manifest, ManifestImage
from multilabelfy.collector.validation import Rejection, Sources, check_record, grant_for, parse_body

SHOWN = (5, 7, 9, 11)
KEY = "1/a.jpeg"


def page(stage: str, prechecked: tuple[int, ...] = ()) -> ManifestImage:
    return ManifestImage(KEY, f"{stage}/1/a.html", SHOWN, prechecked, formats.shown_digest(stage, KEY, SHOWN))


MANIFEST = Manifest(num_classes=20, stages={"annotate": {1: [page("annotate")]},
                                            "refine": {1: [page("refine", (5, 9))]}})
ANNOTATOR = Grant("alice", "annotate", 1)
REFINER = Grant("dave", "refine", 1)


def body(**changes: Any) -> dict[str, Any]:
    base = {"id": "x1", "stage": "annotate", "batch": 1, "image": KEY, "labels": [5, 9],
            "shown": formats.shown_digest("annotate", KEY, SHOWN)}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def test_a_good_record_keeps_known_fields_and_gains_the_annotator() -> None:
    checked = check_record(body(comment="ok", elapsed_ms=12.5, client_time="2026-01-02T03:04:05.678Z"),
                           ANNOTATOR, MANIFEST)
    assert checked.record == {**body(comment="ok", elapsed_ms=12.5, client_time="2026-01-02T03:04:05.678Z"),
                              "annotator": "alice"}
    assert checked.assigned == 1
    none = check_record(body(labels=[], none=True, reason="needs-expert"), ANNOTATOR, MANIFEST).record
    assert none["none"] is True and none["reason"] == "needs-expert"


@pytest.mark.parametrize("changes, grant, status, words", [
    ({"id": ""}, ANNOTATOR, 400, "printable"),
    ({"id": "x" * (formats.MAX_ID_CHARS + 1)}, ANNOTATOR, 400, "printable"),
    ({"id": "a\nb"}, ANNOTATOR, 400, "printable"),
    ({"labels": [5, 5]}, ANNOTATOR, 400, "twice"),
    ({"labels": [5.0]}, ANNOTATOR, 400, "class indices"),
    ({"labels": [True]}, ANNOTATOR, 400, "class indices"),
    ({"labels": 5}, ANNOTATOR, 400, "'labels' must be a list"),
    ({"elapsed_ms": -1}, ANNOTATOR, 400, "elapsed_ms"),
    ({"elapsed_ms": "5"}, ANNOTATOR, 400, "elapsed_ms"),
    ({"client_time": "yesterday"}, ANNOTATOR, 400, "ISO 8601"),
    ({"reason": "low-resolution"}, ANNOTATOR, 422, "goes with 'none'"),
    ({"none": "yes"}, ANNOTATOR, 400, "true or false"),
    ({"comment": None}, ANNOTATOR, 400, "'comment' must be a string"),
    ({"stage": ...}, ANNOTATOR, 400, "missing required field 'stage'"),
    ({"batch": 2}, ANNOTATOR, 403, "annotate batch 1, not annotate batch 2"),
    ({"stage": "refine", "shown": ...}, ANNOTATOR, 403, "not refine batch 1"),
    ({"image": "1/b.jpeg"}, ANNOTATOR, 404, "not in annotate batch 1"),
    ({"shown": formats.shown_digest("annotate", KEY, (5, 7))}, ANNOTATOR, 409, "outdated"),
    ({"labels": [6]}, ANNOTATOR, 422, "label 6 was not shown"),
    ({"stage": "refine", "shown": ..., "labels": [5]}, REFINER, 422, "comment"),
    ({"stage": "refine", "shown": ..., "labels": [5], "comment": "   "}, REFINER, 422, "comment"),
    ({}, Grant("root", admin=True), 403, "admin token cannot submit"),
])
def test_each_rule_refuses_with_its_status(changes: dict, grant: Grant, status: int, words: str) -> None:
    with pytest.raises(Rejection) as caught:
        check_record(body(**changes), grant, MANIFEST)
    assert caught.value.status == status and words in caught.value.message


def test_refine_records_need_a_comment_only_when_they_change_the_prechecked_set() -> None:
    same = check_record(body(stage="refine", shown=..., labels=[9, 5]), REFINER, MANIFEST).record
    assert same["annotator"] == "dave"
    changed = check_record(body(stage="refine", shown=..., labels=[5, 7], comment="7 is visible"), REFINER, MANIFEST)
    assert changed.record["comment"] == "7 is visible"


def test_tokens_are_looked_up_by_hash_only() -> None:
    token = formats.new_token()
    tokens = {formats.token_hash(token): ANNOTATOR}
    assert grant_for(f"Bearer {token}", tokens) == ANNOTATOR
    for header in (None, "", token, f"Basic {token}", "Bearer ", f"Bearer {formats.token_hash(token)}"):
        with pytest.raises(Rejection) as caught:
            grant_for(header, tokens)
        assert caught.value.status == 401 and token not in caught.value.message


@pytest.mark.parametrize("raw", [b"", b"  ", b"nul", b"[]", b'"text"', b'{"a": Infinity}', b'{"a":1,"a":2}', b"\xff"])
def test_bodies_that_are_not_one_json_object(raw: bytes) -> None:
    with pytest.raises(Rejection) as caught:
        parse_body(raw)
    assert caught.value.status == 400


def test_sources_reload_on_change_and_keep_the_last_good_version(tmp_path: Path) -> None:
    site, private = tmp_path / "site", tmp_path / "private"
    site.mkdir(), private.mkdir()
    formats.save_manifest(site, Manifest(num_classes=20, stages={"annotate": {1: [page("annotate")]}}))
    formats.save_tokens(private, {"h1": ANNOTATOR})
    sources = Sources(site, private)
    assert set(sources.manifest.stages) == {"annotate"} and set(sources.tokens) == {"h1"}
    formats.save_manifest(site, MANIFEST)
    formats.save_tokens(private, {"h1": ANNOTATOR, "h2": REFINER})
    assert set(sources.manifest.stages) == {"annotate", "refine"} and set(sources.tokens) == {"h1", "h2"}
    (private / formats.TOKENS_FILE).write_text(json.dumps({"version": 1}) + "\n  ")  # broken edit
    assert set(sources.tokens) == {"h1", "h2"}
