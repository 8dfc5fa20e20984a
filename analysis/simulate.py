"""Simulated annotation projects: real multi-labels in, a site manifest and a store out.

For tests, the benchmark and demos of the analysis commands. The truth is a set of real
multi-labels (the ImageNetV2 labels released with the paper, in `shared/data/imagenetv2`);
simulated annotators miss each true label and add each other shown label at known rates,
and records are written exactly as the collector stores them (the page's fields plus
`annotator` and `server_time`), so the analysis reads what it will read in production.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from multilabelfy.collector import formats

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


@dataclass
class Truth:
    """Images in dataset order: key, original label, true label set."""
    keys: list[str]
    labels: list[int]
    truth: list[list[int]]


def imagenetv2_truth(folder: Path, limit: int | None = None, repeat: int = 1, step: int = 1) -> Truth:
    """ImageNetV2 keys (`<label>/<file>`, dataset order), original labels and the released sets.

    `step` takes every step-th image (a spread over all classes); `repeat` > 1 tiles the
    10,000 images under distinct keys (`r<k>/...`) for scale tests.
    """
    original = json.loads((Path(folder) / "original_labels.json").read_text())
    refined = json.loads((Path(folder) / "refined_labels.json").read_text())
    names = sorted(original, key=lambda name: (original[name], name))[::step][:limit]
    keys, labels, truth = [], [], []
    for r in range(repeat):
        prefix = f"r{r}/" if repeat > 1 else ""
        for name in names:
            keys.append(f"{prefix}{original[name]}/{name}")
            labels.append(int(original[name]))
            truth.append(sorted(int(x) for x in refined[name]))
    return Truth(keys, labels, truth)


def proposals(truth: Truth, k: int = 20, num_classes: int = 1000, seed: int = 0) -> list[list[int]]:
    """What the pages show: the true labels and the original one, topped up to K at random."""
    rng = np.random.default_rng(seed)
    shown: list[list[int]] = []
    for start in range(0, len(truth.keys), 10_000):  # in chunks: 2K random ints per image add up at scale
        stop = min(start + 10_000, len(truth.keys))
        fill = rng.integers(0, num_classes, size=(stop - start, 2 * k)).tolist()
        for label, true, extra in zip(truth.labels[start:stop], truth.truth[start:stop], fill):
            shown.append(list(dict.fromkeys([*true, label, *extra]))[:max(k, len(true) + 1)])
    return shown


def write_site(site_dir: Path, private_dir: Path, truth: Truth, shown: list[list[int]], batches: int,
               annotators: list[str], per_batch: int = 2, num_classes: int = 1000) -> formats.Manifest:
    """manifest.json (stage annotate), images.csv and assignments.json, as the page builder writes them.

    Images are dealt to batches in contiguous runs of dataset order; batch b gets
    `per_batch` annotators, rotating through `annotators`.
    """
    from multilabelfy.build import access

    site_dir, private_dir = Path(site_dir), Path(private_dir)
    site_dir.mkdir(parents=True, exist_ok=True)
    private_dir.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, len(truth.keys), batches + 1).astype(int)
    stage: dict[int, list[formats.ManifestImage]] = {}
    assigned: dict[int, list[str]] = {}
    for b in range(batches):
        pages = []
        for n, i in enumerate(range(bounds[b], bounds[b + 1]), start=1):
            key = truth.keys[i]
            pages.append(formats.ManifestImage(key=key, page=f"annotate/{b + 1}/{n:04d}.html", shown=tuple(shown[i]),
                                               shown_hash=formats.shown_digest("annotate", key, shown[i])))
        stage[b + 1] = pages
        assigned[b + 1] = [annotators[(b * per_batch + j) % len(annotators)] for j in range(per_batch)]
    manifest = formats.Manifest(num_classes=num_classes, stages={"annotate": stage})
    formats.save_manifest(site_dir, manifest)
    access.save_images_csv(private_dir, zip(truth.keys, truth.labels))
    access.save_assignments(private_dir, "annotate", assigned)
    return manifest


def record(stage: str, batch: int, key: str, annotator: str, labels: list[int], shown: list[int] | tuple[int, ...],
           n: int, reason: str | None = None, comment: str = "", seconds: float = 0.0) -> dict[str, Any]:
    """One stored record: the page's fields plus what the collector adds."""
    when = T0 + timedelta(seconds=seconds)
    out: dict[str, Any] = {"id": f"{annotator}-{stage}-{n}", "stage": stage, "batch": batch, "image": key,
                           "labels": [int(x) for x in labels]}
    if not labels:
        out["none"] = True
        out["reason"] = reason
    if comment:
        out["comment"] = comment
    out.update({"shown": formats.shown_digest(stage, key, shown), "elapsed_ms": 4000 + n % 7000,
                "client_time": when.isoformat(), "annotator": annotator,
                "server_time": (when + timedelta(milliseconds=30)).isoformat()})
    return out


def write_records(path: Path, records: Iterable[dict[str, Any]], mode: str = "a") -> None:
    """Append records as JSON lines, as the collector stores them (what the collector appends)."""
    with Path(path).open(mode, encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, separators=(",", ":")) + "\n")


def annotate(manifest: formats.Manifest, assignments: dict[int, list[str]], truth: dict[str, list[int]],
             miss: float, extra: float, skip: float = 0.0, revise: float = 0.0, seed: int = 0,
             stage: str = "annotate") -> list[dict[str, Any]]:
    """The records of `iter_annotations`, as a list."""
    return list(iter_annotations(manifest, assignments, truth, miss, extra, skip, revise, seed, stage))


def iter_annotations(manifest: formats.Manifest, assignments: dict[int, list[str]], truth: dict[str, list[int]],
                     miss: float, extra: float, skip: float = 0.0, revise: float = 0.0, seed: int = 0,
                     stage: str = "annotate") -> Iterator[dict[str, Any]]:
    """Records of simulated annotators for every page of `stage`.

    Each true label is missed with probability `miss`, each other shown label added with
    probability `extra`; an empty answer is "none" with a random reason. A share `skip`
    of (page, annotator) pairs is left unanswered; a share `revise` is first answered
    with everything shown, then revised (the later record must count). Refine answers
    that differ from the pre-checked set carry a comment, as the collector requires.
    """
    rng = np.random.default_rng(seed)
    reasons = list(formats.NONE_REASONS)
    n = 0
    for batch, pages in sorted(manifest.stages[stage].items()):
        for page in pages:
            true = truth[page.key]
            for annotator in assignments[batch]:
                draw = rng.random(len(page.shown) + 3)
                if draw[-1] < skip:
                    continue
                chosen = [c for c, u in zip(page.shown, draw) if (u >= miss if c in true else u < extra)]
                if draw[-2] < revise:
                    yield record(stage, batch, page.key, annotator, list(page.shown), page.shown, n, seconds=n)
                    n += 1
                reason = reasons[int(draw[-3] * len(reasons))] if not chosen else None
                changed = stage == "refine" and set(chosen) != set(page.prechecked)
                yield record(stage, batch, page.key, annotator, sorted(chosen), page.shown, n, reason=reason,
                             comment=f"changed by {annotator}" if changed else "", seconds=n)
                n += 1


@dataclass
class Project:
    """A simulated project on disk: site, private folder and store, plus the truth behind it."""
    site: Path
    private: Path
    store: Path
    truth: Truth
    shown: list[list[int]]
    manifest: formats.Manifest
    assignments: dict[int, list[str]]

    def truth_of(self) -> dict[str, list[int]]:
        return dict(zip(self.truth.keys, self.truth.truth))


def project(root: Path, truth: Truth, batches: int = 3, annotators: tuple[str, ...] = ("alice", "bob", "dave"),
            per_batch: int = 2, miss: float = 0.1, extra: float = 0.01, skip: float = 0.0, revise: float = 0.0,
            seed: int = 0) -> Project:
    """Write a simulated project under `root` (site/, private/, submissions.jsonl)."""
    root = Path(root)
    shown = proposals(truth, seed=seed)
    manifest = write_site(root / "site", root / "private", truth, shown, batches, list(annotators), per_batch)
    from multilabelfy.build import access

    assigned = access.load_assignments(root / "private")["annotate"]
    store = root / "submissions.jsonl"
    records = iter_annotations(manifest, assigned, dict(zip(truth.keys, truth.truth)), miss=miss, extra=extra,
                               skip=skip, revise=revise, seed=seed)
    write_records(store, records, mode="w")
    return Project(root / "site", root / "private", store, truth, shown, manifest, assigned)
