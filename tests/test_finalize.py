"""Stage 4: final labels from a simulated project, checked against the truth and plain loops."""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from test_disagreement import IMAGENETV2, expected_statuses

from multilabelfy.analysis import disagreement, finalize, inputs, refine, simulate
from multilabelfy.analysis.cli import main
from multilabelfy.build import access, site
from multilabelfy.collector import formats


def add_refine_stage(project: simulate.Project, refiners: list[str], per_image: int = 1, miss: float = 0.0,
                     extra: float = 0.0, skip: float = 0.0, include_incomplete: bool = False) -> dict[int, list[str]]:
    """The refine stage as `refine` writes it (without rendering pages), then the refiners' records."""
    result = disagreement.analyse(inputs.load_inputs(project.site, project.private, project.store))
    plan = refine.plan(result, refiners, per_image=per_image, include_incomplete=include_incomplete)
    pages = {b: [formats.ManifestImage(key=s.key, page=f"refine/{b}/{i:04d}.html", shown=tuple(s.shown),
                                       prechecked=tuple(s.prechecked),
                                       shown_hash=formats.shown_digest("refine", s.key, s.shown))
                 for i, s in enumerate(specs, start=1)] for b, specs in plan.specs.items()}
    site.save_stage(project.site, "refine", pages, num_classes=1000)
    access.save_assignments(project.private, "refine", plan.assignments)
    records = simulate.annotate(formats.load_manifest(project.site), plan.assignments, project.truth_of(),
                                miss=miss, extra=extra, skip=skip, seed=11, stage="refine")
    for r in records:  # what the collector enforces
        page = next(p for p in pages[r["batch"]] if p.key == r["image"])
        assert set(r["labels"]) == set(page.prechecked) or r.get("comment")
    simulate.write_records(project.store, records)
    return plan.assignments


def latest(project: simulate.Project) -> dict[tuple[str, str, str], dict]:
    out = {}
    for line in project.store.read_text().splitlines():
        record = json.loads(line)
        out[(record["stage"], record["image"], record["annotator"])] = record
    return out


def run_finalize(project: simulate.Project, out: Path, *extra: str) -> int:
    return main(["finalize", "--site", str(project.site), "--private", str(project.private),
                 "--store", str(project.store), "--out", str(out), *extra])


@pytest.fixture
def project(tmp_path: Path) -> simulate.Project:
    truth = simulate.imagenetv2_truth(IMAGENETV2, step=10)  # 1,000 images over all classes
    return simulate.project(tmp_path, truth, batches=3, annotators=("alice", "bob", "dave"),
                            miss=0.1, extra=0.005, skip=0.02, seed=3)


def test_perfect_refiners_give_the_truth(project: simulate.Project, tmp_path: Path, capsys) -> None:
    add_refine_stage(project, ["carol", "erin"])
    statuses = expected_statuses(project)
    incomplete = [k for k, s in statuses.items() if s == "incomplete"]
    assert incomplete  # skip=0.02 leaves some first-stage answers missing

    out = tmp_path / "labels"
    assert run_finalize(project, out) == 2  # still waiting: fails, writes only the list
    err = capsys.readouterr().err
    assert f"{len(incomplete):,} images are still waiting" in err and "--allow-incomplete" in err
    assert not (out / "real_labels.json").exists()
    with (out / "waiting.csv").open() as fh:
        waiting = list(csv.DictReader(fh))
    assert sorted(r["key"] for r in waiting) == sorted(incomplete)
    assert all(r["why"].startswith("waiting for annotator(s)") for r in waiting)

    assert run_finalize(project, out, "--allow-incomplete", "--dawid-skene") == 0
    printed = capsys.readouterr().out
    assert "labels per image:" in printed and "Dawid-Skene" in printed
    with (out / "dawid_skene_annotators.csv").open() as fh:
        assert {r["annotator"] for r in csv.DictReader(fh)} == {"alice", "bob", "dave"}
    truth = project.truth_of()
    records = latest(project)
    real = json.loads((out / "real_labels.json").read_text())
    with (out / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    released = json.loads((out / "refined_labels.json").read_text())
    assert [r["key"] for r in rows] == project.truth.keys and len(real) == len(rows)
    batch_of = {p.key: b for b, pages in project.manifest.stages["annotate"].items() for p in pages}
    original = dict(zip(project.truth.keys, project.truth.labels))
    for row, labels in zip(rows, real):
        key, status = row["key"], statuses[row["key"]]
        assert [int(x) for x in row["labels"].split()] == labels and int(row["original_label"]) == original[key]
        if status == "agreed":
            first_annotator = project.assignments[batch_of[key]][0]
            assert row["status"] == "agreed" and labels == sorted(records[("annotate", key, first_annotator)]["labels"])
        elif status == "incomplete":
            assert row["status"] == "incomplete" and labels == [] and key.split("/")[-1] not in released
        else:
            assert row["status"] == "refined" and labels == truth[key]
        if row["status"] != "incomplete":
            assert released[key.split("/")[-1]] == [str(x) for x in labels]
        if not labels and row["status"] == "refined":
            refiner_reasons = [r.get("reason") for (s, k, _), r in records.items() if s == "refine" and k == key]
            assert row["empty_reason"] in formats.NONE_REASONS and row["empty_reason"] in refiner_reasons
    finished = [r for r in rows if r["status"] != "incomplete"]
    exact = np.mean([[int(x) for x in r["labels"].split()] == truth[r["key"]] for r in finished])
    assert exact > 0.97  # only a mistake both annotators made identically survives
    assert any(r["empty_reason"] for r in rows)  # the truth has images without any label


def test_several_refiners_per_image_majority_rule(project: simulate.Project, tmp_path: Path) -> None:
    assigned = add_refine_stage(project, ["carol", "erin", "frank"], per_image=2, miss=0.2, extra=0.01, skip=0.05,
                                include_incomplete=True)
    assert all(len(people) == 2 for people in assigned.values())
    out = tmp_path / "labels"
    assert run_finalize(project, out, "--allow-incomplete") == 0
    records = latest(project)
    manifest = formats.load_manifest(project.site)
    statuses = expected_statuses(project)
    with (out / "labels.csv").open() as fh:
        rows = {r["key"]: r for r in csv.DictReader(fh)}
    refined = waiting_refiners = 0
    for batch, pages in manifest.stages["refine"].items():
        for page in pages:
            answers = [records.get(("refine", page.key, who)) for who in assigned[batch]]
            row = rows[page.key]
            if any(a is None for a in answers):
                assert row["status"] == ("agreed" if statuses[page.key] == "agreed" else "incomplete")
                waiting_refiners += row["status"] == "incomplete"
                continue
            votes = Counter(label for a in answers for label in a["labels"])
            expected = sorted(label for label, n in votes.items() if 2 * n >= len(answers))  # 1 of 2 is kept
            assert row["status"] == "refined" and [int(x) for x in row["labels"].split()] == expected
            refined += 1
    assert refined > 100 and waiting_refiners > 0
    with (out / "waiting.csv").open() as fh:
        assert any(r["why"].startswith("waiting for refiner(s)") for r in csv.DictReader(fh))


def test_release_names_fall_back_to_keys_when_file_names_repeat() -> None:
    keys = np.array(["1/a.jpeg", "2/a.jpeg", "2/b.jpeg", "c.jpeg"], dtype=object)
    assert finalize.release_names(keys).tolist() == ["1/a.jpeg", "2/a.jpeg", "b.jpeg", "c.jpeg"]


def test_failed_finalize_keeps_earlier_labels(project: simulate.Project, tmp_path: Path) -> None:
    out = tmp_path / "labels"
    assert run_finalize(project, out, "--allow-incomplete") == 0
    before = (out / "real_labels.json").read_bytes()
    assert run_finalize(project, out) == 2
    assert (out / "real_labels.json").read_bytes() == before and (out / "waiting.csv").exists()


def test_columnar_manifest_matches_the_reference_reader(project: simulate.Project) -> None:
    """The Arrow fast path reads manifest.json exactly as formats.load_manifest does."""
    add_refine_stage(project, ["carol", "erin"])
    num_classes, fast = inputs._read_pages_arrow(project.site / "manifest.json")
    reference = formats.load_manifest(project.site)
    assert num_classes == reference.num_classes and set(fast) == set(reference.stages) == {"annotate", "refine"}
    for stage, batches in reference.stages.items():
        slow = inputs._pages_from_manifest(batches)
        assert fast[stage].keys.tolist() == slow.keys.tolist() and fast[stage].batch.tolist() == slow.batch.tolist()
        assert fast[stage].shown.to_lists() == slow.shown.to_lists()
        assert fast[stage].prechecked.to_lists() == slow.prechecked.to_lists()
    assert any(fast["refine"].prechecked.lengths) and not any(fast["annotate"].prechecked.lengths)


def test_dawid_skene_recovers_annotator_reliability(tmp_path: Path) -> None:
    """Three annotators with known, different miss and extra rates: EM finds them, and its
    probabilities beat the weakest annotator against the truth. (With two answers per
    question the model is only weakly identified; three is the classic minimum.)"""
    from multilabelfy.analysis import dawid_skene

    truth = simulate.imagenetv2_truth(IMAGENETV2, step=5)  # 2,000 images
    project = simulate.project(tmp_path, truth, batches=1, annotators=("alice", "bob", "dave"), per_batch=3)
    rates = {"alice": (0.05, 0.002), "bob": (0.3, 0.02), "dave": (0.15, 0.01)}
    records = [r for who, (miss, extra) in rates.items()
               for r in simulate.annotate(project.manifest, {1: [who]}, project.truth_of(), miss=miss, extra=extra,
                                          seed=len(who) + ord(who[0]))]
    simulate.write_records(project.store, records, mode="w")
    result = disagreement.analyse(inputs.load_inputs(project.site, project.private, project.store))
    model = dawid_skene.fit(result.answers)
    people = dawid_skene.annotator_table(model).set_index("annotator")
    for who, (miss, extra) in rates.items():
        assert people.loc[who, "sensitivity"] == pytest.approx(1 - miss, abs=0.03)
        assert people.loc[who, "specificity"] == pytest.approx(1 - extra, abs=0.005)
    keys = result.answers.images["key"].to_numpy()[model.page]
    valid = np.array([label in project.truth_of()[key] for key, label in zip(keys, model.label)])
    model_errors = np.sum((model.probability > 0.5) != valid)
    bob_says = {(r["image"], c) for r in records if r["annotator"] == "bob" for c in r["labels"]}
    bob_errors = np.sum(np.array([(k, c) in bob_says for k, c in zip(keys, model.label)]) != valid)
    assert model_errors < bob_errors / 2

    add_refine_stage(project, ["carol"], miss=0.3)  # a careless refiner: the model should flag her misses
    result = disagreement.analyse(inputs.load_inputs(project.site, project.private, project.store))
    final = finalize.finalize(result)
    differ = dawid_skene.disagreements(model, result.answers, final)
    final_sets = {k: set(v) for k, v in zip(final.keys.tolist(), final.labels.to_lists())}
    expected = {(k, int(c)) for k, c, p in zip(keys, model.label, model.probability)
                if (p > 0.5) != (c in final_sets[k])}
    assert set(zip(differ["key"], differ["label"])) == expected and len(expected) > 20
    missed = differ[~differ["in_final"]]
    assert len(missed) > 0.8 * len(differ)  # mostly labels the refiner dropped
