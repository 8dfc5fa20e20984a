"""Reading final labels in every form a researcher may have: ours, the paper's, ReaL's."""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path, PurePosixPath

import numpy as np
import pytest

from multilabelfy.analysis.labels_io import MISSING, KeyMatcher, imagenet_val_name, load_labels
from multilabelfy.collector.clitools import UserError

from conftest import IMAGENETV2, needs_imagenetv2

REFINED = IMAGENETV2 / "refined_labels.json"
ORIGINAL = IMAGENETV2 / "original_labels.json"


def write_labels_dir(folder: Path, keys: list[str], sets: list[list[int]], originals: list[int],
                     status: list[str] | None = None, reasons: list[str] | None = None) -> Path:
    """A LABELS_DIR as docs/formats.md describes finalize's output (all three files)."""
    folder.mkdir(parents=True, exist_ok=True)
    status = status or ["agreed"] * len(keys)
    reasons = reasons or [""] * len(keys)
    (folder / "real_labels.json").write_text(json.dumps([list(s) for s in sets]))
    with (folder / "labels.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["key", "original_label", "labels", "status", "empty_reason"])
        for row in zip(keys, originals, [" ".join(map(str, s)) for s in sets], status, reasons):
            writer.writerow(row)
    names = Counter(PurePosixPath(k).name for k in keys)
    released = {(PurePosixPath(k).name if names[PurePosixPath(k).name] == 1 else k): [str(i) for i in s]
                for k, s in zip(keys, sets)}
    (folder / "refined_labels.json").write_text(json.dumps(released))
    return folder


@needs_imagenetv2
def test_paper_release_gives_the_papers_distribution():
    table = load_labels(REFINED, ORIGINAL)
    counts = Counter(table.counts.tolist())
    raw = json.loads(REFINED.read_text())
    # computed independently from the raw JSON
    assert len(table) == len(raw) == 10_000
    assert counts[0] == sum(1 for v in raw.values() if not v) == 129
    assert counts[1] == 5083 and counts[2] == 2385
    assert sum(c for k, c in counts.items() if k > 2) == 2403
    assert table.has_original and (table.original != MISSING).all()
    inside = table.original_in_set()
    original = json.loads(ORIGINAL.read_text())
    expected = np.mean([str(original[k]) in v for k, v in raw.items()])
    assert inside.mean() == pytest.approx(expected)
    assert round(100 * inside.mean(), 2) == 87.97


def test_labels_dir_reads_csv_with_status_and_reasons(tmp_path: Path):
    keys = ["3/a.jpeg", "3/b.jpeg", "7/c.jpeg"]
    write_labels_dir(tmp_path / "labels", keys, [[3, 5], [], [7]], [3, 3, 7],
                     ["agreed", "refined", "agreed"], ["", "low-resolution", ""])
    table = load_labels(tmp_path / "labels")
    assert table.keys == keys
    assert table.labels == [(3, 5), (), (7,)]
    assert table.original.tolist() == [3, 3, 7]
    assert table.status == ["agreed", "refined", "agreed"]
    assert table.empty_reason == ["", "low-resolution", ""]
    assert table.original_in_set().tolist() == [True, False, True]


def test_images_still_waiting_are_left_out(tmp_path: Path):
    folder = write_labels_dir(tmp_path / "labels", ["1/a.jpg", "1/b.jpg", "2/c.jpg"], [[1], [], []], [1, 1, 2],
                              ["agreed", "incomplete", "refined"], ["", "", "needs-expert"])
    table = load_labels(folder)
    assert table.keys == ["1/a.jpg", "2/c.jpg"] and table.waiting == 1
    assert table.counts.tolist() == [1, 0] and table.empty_reason == ["", "needs-expert"]
    assert any("still waiting" in n for n in table.notes)


def test_labels_dir_without_csv_falls_back_to_released_json(tmp_path: Path):
    folder = write_labels_dir(tmp_path / "labels", ["3/a.jpeg", "7/c.jpeg"], [[3], [7, 1]], [3, 7])
    (folder / "labels.csv").unlink()
    original = tmp_path / "orig.json"
    original.write_text(json.dumps({"a.jpeg": 3, "c.jpeg": 2}))
    table = load_labels(folder, original)
    assert table.keys == ["a.jpeg", "c.jpeg"] and table.labels == [(3,), (7, 1)]
    assert table.original.tolist() == [3, 2]
    assert any("labels.csv is missing" in n for n in table.notes)


def test_real_list_form_uses_imagenet_val_names_or_ordered_csv(tmp_path: Path):
    real = tmp_path / "real.json"
    real.write_text(json.dumps([[1], [], [2, 3]]))
    table = load_labels(real)
    assert table.keys == [imagenet_val_name(i) for i in range(3)] == [
        "ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG", "ILSVRC2012_val_00000003.JPEG"]
    assert not table.has_original
    images = tmp_path / "images.csv"
    images.write_text("key,label\n1/x.png,1\n0/y.png,0\n2/z.png,2\n")
    table = load_labels(real, images)
    assert table.keys == ["1/x.png", "0/y.png", "2/z.png"]
    assert table.original.tolist() == [1, 0, 2]
    images.write_text("key,label\n1/x.png,1\n")
    with pytest.raises(UserError, match="by position"):
        load_labels(real, images)


def test_key_matcher_full_key_then_unique_file_name():
    matcher = KeyMatcher(["a/x.jpg", "b/x.jpg", "c/y.jpg", "z.jpg"])
    assert matcher.find("b/x.jpg") == 1          # full key wins
    assert matcher.find("q/x.jpg") == MISSING    # x.jpg is ambiguous by name
    assert matcher.find("y.jpg") == 2 and matcher.find("9/z.jpg") == 3
    assert matcher.align(["c/y.jpg", "nope.jpg"]).tolist() == [2, MISSING]


@pytest.mark.parametrize("content, message", [
    ('{"a.jpg": "3"}', "must be a list"),
    ('{"a.jpg": ["cat"]}', "not a class index"),
    ('{"a.jpg": [-1]}', "negative"),
    ('"text"', "neither a JSON object"),
    ("{broken", "not readable JSON"),
    ("{}", "hold no images"),
])
def test_bad_label_files_name_the_problem(tmp_path: Path, content: str, message: str):
    path = tmp_path / "labels.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        load_labels(path)


def test_original_that_matches_nothing_or_disagrees_is_an_error(tmp_path: Path):
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"a.jpg": ["1"], "b.jpg": ["2"]}))
    other = tmp_path / "orig.json"
    other.write_text(json.dumps({"zzz.jpg": 1}))
    with pytest.raises(UserError, match="no image of the labels"):
        load_labels(labels, other)
    folder = write_labels_dir(tmp_path / "dir", ["1/a.jpg"], [[1]], [1])
    other.write_text(json.dumps({"a.jpg": 4}))
    with pytest.raises(UserError, match="disagree"):
        load_labels(folder, other)
    with pytest.raises(UserError, match="do not exist"):
        load_labels(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="has none of"):
        load_labels(tmp_path / "empty")
