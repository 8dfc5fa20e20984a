"""Stage 3: statuses from a simulated project (real ImageNetV2 multi-labels as the truth),
checked against an independent loop over the stored records."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from multilabelfy.analysis import disagreement, inputs, simulate
from multilabelfy.analysis.cli import main
from multilabelfy.collector import formats
from multilabelfy.collector.clitools import UserError

from conftest import IMAGENETV2


def expected_statuses(project: simulate.Project) -> dict[str, str]:
    """The issue's rules, written as plainly as possible over the raw files."""
    latest: dict[tuple[str, str, str], dict] = {}
    for line in project.store.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        latest[(record["stage"], record["image"], record["annotator"])] = record
    manifest = json.loads((project.site / "manifest.json").read_text())
    assignments = json.loads((project.private / "assignments.json").read_text())
    with (project.private / "images.csv").open() as fh:
        originals = {row["key"]: int(row["label"]) for row in csv.DictReader(fh)}
    out = {key: "incomplete" for key in originals}
    for batch in manifest["stages"]["annotate"]["batches"]:
        people = assignments["annotate"][str(batch["batch"])]
        for page in batch["images"]:
            answers = [latest.get(("annotate", page["key"], who)) for who in people]
            if not people or any(a is None for a in answers):
                continue
            sets = [set(a["labels"]) for a in answers]
            if all(s == sets[0] for s in sets):
                out[page["key"]] = "agreed" if originals[page["key"]] in sets[0] else "original-missing"
            else:
                out[page["key"]] = "disagreed"
    return out


@pytest.fixture(params=[2, 3], ids=["2-per-batch", "3-per-batch"])
def project(tmp_path: Path, request) -> simulate.Project:
    truth = simulate.imagenetv2_truth(IMAGENETV2, step=12)  # 834 images over all classes
    project = simulate.project(tmp_path, truth, batches=4, annotators=("alice", "bob", "dave", "erin"),
                               per_batch=request.param, miss=0.1, extra=0.01, skip=0.03, revise=0.05, seed=7)
    # a record of someone not assigned to that batch, and a torn last line (a crash mid-write)
    key = project.manifest.stages["annotate"][1][0].key
    simulate.write_records(project.store, [simulate.record("annotate", 1, key, "mallory", [1, 2], [1, 2], 99999)])
    with project.store.open("a") as fh:
        fh.write('{"id": "torn", "stage": "annot')
    return project


def test_statuses_match_an_independent_count(project: simulate.Project, tmp_path: Path, capsys) -> None:
    expected = expected_statuses(project)
    assert set(expected.values()) == set(disagreement.STATUSES)  # the simulation exercises every status

    out = tmp_path / "dis"
    code = main(["disagreement", "--site", str(project.site), "--private", str(project.private),
                 "--store", str(project.store), "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr()
    need = sum(s in ("disagreed", "original-missing") for s in expected.values())
    assert f"{need:,} of {len(expected):,} images need refinement" in printed.out
    assert "1 damaged line(s)" in printed.err and "torn" in printed.err
    assert "match no assigned page" in printed.out and "mallory" in printed.out

    for frame in (pd.read_csv(out / "disagreement.csv", keep_default_na=False),
                  pd.read_parquet(out / "disagreement.parquet")):
        assert list(frame.columns[:4]) == ["key", "batch", "status", "label"]
        assert frame["key"].tolist() == list(expected)  # dataset order, every image
        assert dict(zip(frame["key"], frame["status"].astype(str))) == expected
    stats = json.loads((out / "agreement.json").read_text())
    assert {"exact_match_rate", "mean_jaccard", "krippendorff_alpha_masi", "per_label_alpha"} <= set(stats)
    assert 0 < stats["krippendorff_alpha_masi"] < 1 and 0 < stats["exact_match_rate"] < stats["mean_jaccard"] < 1
    assert all(set(x) == {"label", "n", "alpha"} and x["n"] >= 20 for x in stats["per_label_alpha"])


def test_table_shows_everyones_choices(project: simulate.Project) -> None:
    result = disagreement.analyse(inputs.load_inputs(project.site, project.private, project.store))
    frame = disagreement.table(result).set_index("key")
    latest = formats.latest_records(formats.read_store(project.store)[0])
    people = {b: names for b, names in project.assignments.items()}
    for batch, pages in project.manifest.stages["annotate"].items():
        for page in pages[:40]:
            row = frame.loc[page.key]
            assert row["batch"] == batch and row["n_assigned"] == len(people[batch])
            for j, who in enumerate(people[batch], start=1):
                record = latest.get(("annotate", page.key, who))
                assert row[f"annotator_{j}"] == who and row[f"answered_{j}"] == (record is not None)
                if record is not None:
                    assert row[f"labels_{j}"] == " ".join(map(str, sorted(set(record["labels"]))))
                    assert row[f"none_{j}"] == bool(record.get("none"))
                    assert row[f"reason_{j}"] == (record.get("reason") or "")
            chosen = [int(x) for x in row["chosen"].split()]
            votes = [int(x) for x in row["votes"].split()]
            for label, count in zip(chosen, votes):
                assert count == sum(label in (latest.get(("annotate", page.key, w)) or {"labels": []})["labels"]
                                    for w in people[batch])


def test_latest_record_counts_like_formats(project: simulate.Project) -> None:
    """The column-wise reader keeps exactly formats.latest_records' choice, torn line set aside."""
    store = inputs.read_store(project.store)
    records, bad = formats.read_store(project.store)
    latest = formats.latest_records(records)
    assert [b.number for b in store.bad_lines] == [b.number for b in bad] and len(bad) == 1
    frame, labels = store.latest()
    assert store.total_records == len(records) and len(frame) == len(latest)
    ours = {(r.stage, r.image, r.annotator): (r.id, labels) for r, labels in zip(frame.itertuples(), labels.to_lists())}
    assert ours == {k: (r["id"], r["labels"]) for k, r in latest.items()}


def test_invalid_records_are_reported_not_fatal(tmp_path: Path) -> None:
    truth = simulate.imagenetv2_truth(IMAGENETV2, limit=30)
    project = simulate.project(tmp_path, truth, batches=1, annotators=("alice", "bob"))
    with project.store.open("a") as fh:
        fh.write(json.dumps({"id": "x", "stage": "annotate", "image": truth.keys[0], "annotator": "bob",
                             "labels": "not a list", "batch": 1}) + "\n")
        fh.write("[1, 2]\n")
    store = inputs.read_store(project.store)
    assert len(store.bad_lines) == 1 and store.bad_lines[0].text.startswith("[1, 2]")
    assert len(store.invalid) == 1 and "labels" in store.invalid[0]
    assert len(store) == 60 and len(store.latest()[0]) == 60  # every good record still counts


def test_missing_and_inconsistent_inputs_are_user_errors(tmp_path: Path, capsys) -> None:
    truth = simulate.imagenetv2_truth(IMAGENETV2, limit=20)
    project = simulate.project(tmp_path, truth, batches=2, annotators=("alice", "bob"))
    args = ["disagreement", "--site", str(project.site), "--private", str(project.private), "--out", str(tmp_path / "o")]
    assert main(args + ["--store", str(tmp_path / "nope.jsonl")]) == 2
    assert "nope.jsonl" in capsys.readouterr().err
    (project.private / "images.csv").write_text("key,label\n" + truth.keys[0] + ",3\n")
    with pytest.raises(UserError, match="images.csv does not list"):
        disagreement.analyse(inputs.load_inputs(project.site, project.private, project.store))
    (project.private / "assignments.json").write_text('{"annotate": {"1": ["alice"]}}')
    rows = "\n".join(f"{k},{label}" for k, label in zip(truth.keys, truth.labels))
    (project.private / "images.csv").write_text("key,label\n" + rows)
    with pytest.raises(UserError, match="no annotators for annotate batch 2"):
        disagreement.analyse(inputs.load_inputs(project.site, project.private, project.store))
