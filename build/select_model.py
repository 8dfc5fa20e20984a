"""Model selection: which candidate proposes best, judged by ReaL accuracy on multi-labels.

A model whose top-1 lies in the image's *set* of valid labels is right (ReaL); plain top-1
against the single original label is shown beside it. The label sets come in ReaL form:
a JSON list of label lists, one per image, either in dataset order or, for ImageNet val,
by the number in the file name (`ILSVRC2012_val_00000001.JPEG` is entry 0), which is how
timm's `imagenet_real_labels.json` is ordered whatever the folder layout.
"""
from __future__ import annotations

import json
import pkgutil
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from multilabelfy.build.datasets import Dataset
from multilabelfy.build.metrics import real_accuracy, topk_accuracy
from multilabelfy.collector.clitools import UserError

TIMM_REAL = "imagenet-real"   # timm's bundled imagenet_real_labels.json (ImageNet-1k val)
ORDERS = ("auto", "dataset", "filename")
_ILSVRC_VAL = re.compile(r"ILSVRC2012_val_(\d{8})\.JPEG$", re.IGNORECASE)


def read_label_sets(spec: str | Path) -> list[list[int]]:
    """A ReaL-form file (or `imagenet-real` for timm's copy): a list of lists of class indices."""
    if str(spec) == TIMM_REAL:
        raw = pkgutil.get_data("timm.data", "_info/imagenet_real_labels.json")
        assert raw is not None
        data = json.loads(raw)
        where = "timm's imagenet_real_labels.json"
    else:
        path = Path(spec)
        if not path.is_file():
            raise UserError(f"labels file {str(path)!r} does not exist (or give {TIMM_REAL!r})")
        where = f"labels file {str(path)!r}"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise UserError(f"{where} is not JSON: {exc}") from None
    if not isinstance(data, list) or not all(isinstance(s, list) for s in data):
        raise UserError(f"{where}: expected a JSON list of label lists (ReaL form)")
    try:
        return [[int(c) for c in labels] for labels in data]
    except (TypeError, ValueError):
        raise UserError(f"{where}: every label must be a class index") from None


def align_label_sets(label_sets: list[list[int]], keys: Sequence[str], order: str = "auto",
                     where: str = "labels file") -> dict[str, list[int]]:
    """Image key -> its label set.

    `filename`: entry i belongs to `ILSVRC2012_val_{i+1:08d}.JPEG` (as timm's RealLabelsImagenet);
    `dataset`: entry i belongs to the i-th image in dataset order; `auto`: `filename` when every
    file is named that way, else `dataset`.
    """
    if order not in ORDERS:
        raise UserError(f"--labels-order {order!r}: choose one of {', '.join(ORDERS)}")
    matches = [_ILSVRC_VAL.search(key) for key in keys]
    if order == "auto":
        order = "filename" if all(matches) else "dataset"
    if order == "dataset":
        if len(label_sets) != len(keys):
            raise UserError(f"{where} has {len(label_sets)} entries but the dataset has {len(keys)} images "
                            f"(dataset order needs one entry per image)")
        return dict(zip(keys, label_sets))
    out = {}
    for key, match in zip(keys, matches):
        if match is None:
            raise UserError(f"image {key!r} is not named ILSVRC2012_val_NNNNNNNN.JPEG (--labels-order filename)")
        number = int(match.group(1))
        if not 1 <= number <= len(label_sets):
            raise UserError(f"image {key!r}: {where} has only {len(label_sets)} entries")
        out[key] = label_sets[number - 1]
    return out


@dataclass
class ModelScore:
    model: str
    weights: str
    images: int          # images predicted
    real_images: int     # of those, with a non-empty label set (ReaL's denominator)
    real_top1: float
    real_top5: float
    top1: float
    top5: float


def score(model: str, weights: str, predictions: np.ndarray, originals: Sequence[int],
          label_sets: Sequence[Sequence[int]]) -> ModelScore:
    """ReaL and plain accuracies (percent) of ranked predictions (N, >=5), aligned with the labels."""
    k5 = min(5, predictions.shape[1])
    return ModelScore(model=model, weights=weights, images=len(originals),
                      real_images=sum(1 for s in label_sets if len(s)),
                      real_top1=real_accuracy(predictions, label_sets, k=1),
                      real_top5=real_accuracy(predictions, label_sets, k=k5),
                      top1=topk_accuracy(predictions, originals, k=1),
                      top5=topk_accuracy(predictions, originals, k=k5))


def ranking(scores: Sequence[ModelScore]) -> list[ModelScore]:
    """Best first: by ReaL top-1, then plain top-1, then name (a stable order for ties)."""
    return sorted(scores, key=lambda s: (-np.nan_to_num(s.real_top1, nan=-1), -s.top1, s.model))


def format_ranking(scores: Sequence[ModelScore]) -> str:
    width = max([len(s.model) for s in scores] + [5])
    lines = [f"{'#':>2}  {'model':<{width}}  {'ReaL@1':>7}  {'top-1':>7}  {'ReaL@5':>7}  {'top-5':>7}  images"]
    for place, s in enumerate(scores, start=1):
        lines.append(f"{place:>2}  {s.model:<{width}}  {s.real_top1:7.2f}  {s.top1:7.2f}  {s.real_top5:7.2f}  "
                     f"{s.top5:7.2f}  {s.real_images}/{s.images}")
    return "\n".join(lines)


def save_ranking(scores: Sequence[ModelScore], path: Path) -> None:
    """CSV or JSON by suffix, best model first."""
    import csv

    rows = [{"rank": place, **asdict(s)} for place, s in enumerate(scores, start=1)]
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
        return
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def predict_dataset(predictor, dataset: Dataset) -> tuple[dict[str, list], list[tuple[str, str]]]:
    """All rows of one model over the whole dataset, in memory (selection needs no resumption)."""
    from multilabelfy.build.proposals import empty_rows, make_chunks

    rows, skipped = empty_rows(), []
    for result in predictor.run(dataset, make_chunks(len(dataset), predictor.options.chunk_size),
                                desc=f"evaluate {predictor.loaded.spec.name}"):
        for name, values in result.rows.items():
            rows[name].extend(values)
        skipped.extend(result.skipped)
    return rows, skipped
