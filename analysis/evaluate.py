"""Re-evaluate models on the final labels: the numbers behind the paper's Figures 4 and 5.

Per model: top-1/top-5 against the original labels, ReaL top-1/top-5 (from
`build.metrics`, never reimplemented), and top-1 accuracy per label count with two
95% intervals. Across models: the linear fit of ReaL on top-1 and its outliers.

On intervals: the paper's margin of error, 1.96·σ/√n with σ = √(p(1−p)/n), divides by √n
twice. The half-width of the normal 95% interval is 1.96·√(p(1−p)/n); Wilson's interval
stays inside [0, 1] and keeps its coverage for small n and p near 0 or 1.
"""
from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from multilabelfy.analysis.labels_io import MISSING, LabelTable
from multilabelfy.build import metrics
from multilabelfy.collector.clitools import UserError

Z95 = 1.959963984540054  # two-sided 95% normal quantile
MODELS_CSV = "models.csv"
BY_COUNT_CSV = "by_label_count.csv"
FIT_JSON = "fit.json"
SUMMARY_JSON = "evaluation.json"


# --- predictions --------------------------------------------------------------------------

@dataclass
class Predictions:
    """One model's ranked class indices per image (rows padded with -1 when shorter)."""
    model: str
    keys: list[str]
    ranked: np.ndarray                   # (N, k) int64
    labels: np.ndarray | None = None     # the file's own original labels, when it has them
    source: str = ""


def read_predictions(paths: Sequence[Path]) -> list[Predictions]:
    """Models' predictions from propose's Parquet files or CSVs (key,model,predictions)."""
    from multilabelfy.build.proposals_table import read_proposals

    models: list[Predictions] = []
    seen_files: set[Path] = set()
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"--predictions file {str(path)!r} does not exist")
        if path.resolve() in seen_files:
            raise UserError(f"--predictions names {str(path)!r} twice: each model would be scored twice")
        seen_files.add(path.resolve())
        if path.suffix.lower() == ".csv":
            models.extend(_read_predictions_csv(path))
            continue
        frame, meta = read_proposals(path)
        ranked = _pad([list(c) for c in frame["classes"]], f"proposals file {path}")
        models.append(Predictions(model=str(meta.get("model") or path.stem), keys=frame["key"].astype(str).tolist(),
                                  ranked=ranked, labels=frame["label"].to_numpy(dtype=np.int64), source=str(path)))
    seen: dict[str, int] = {}
    for pred in models:  # two files of the same model stay apart in every table
        seen[pred.model] = seen.get(pred.model, 0) + 1
        if seen[pred.model] > 1:
            pred.model = f"{pred.model} ({Path(pred.source).stem})"
    return models


def _read_predictions_csv(path: Path) -> list[Predictions]:
    if not path.is_file():
        raise UserError(f"predictions file {str(path)!r} does not exist")
    per_model: dict[str, tuple[list[str], list[list[int]]]] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not {"key", "model", "predictions"} <= set(reader.fieldnames or []):
            raise UserError(f"predictions file {path} must have columns key,model,predictions")
        for number, row in enumerate(reader, start=2):
            try:
                ranked = [int(p) for p in (row["predictions"] or "").split()]
            except ValueError:
                raise UserError(f"{path} line {number}: predictions must be space-separated class indices") from None
            if not ranked:
                raise UserError(f"{path} line {number}: no predictions")
            keys, rows = per_model.setdefault(row["model"] or path.stem, ([], []))
            keys.append(row["key"])
            rows.append(ranked)
    if not per_model:
        raise UserError(f"predictions file {path} has no rows")
    return [Predictions(model=m, keys=k, ranked=_pad(r, f"predictions file {path}"), source=str(path))
            for m, (k, r) in per_model.items()]


def _pad(rows: list[list[int]], where: str) -> np.ndarray:
    if not rows:
        raise UserError(f"{where} has no rows")
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


# --- intervals ----------------------------------------------------------------------------

def normal_half_width(p: float, n: int, z: float = Z95) -> float:
    """Half-width of the normal (Wald) interval for a proportion p out of n."""
    return z * math.sqrt(p * (1 - p) / n) if n > 0 else float("nan")


def paper_margin(p: float, n: int, z: float = Z95) -> float:
    """The paper's formula, 1.96·σ/√n with σ = √(p(1−p)/n): √n divided twice (kept to compare)."""
    return normal_half_width(p, n, z) / math.sqrt(n) if n > 0 else float("nan")


def wilson_interval(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval (low, high) for a proportion p out of n."""
    if n <= 0:
        return float("nan"), float("nan")
    z2n = z * z / n
    centre = (p + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


# --- label-count groups -------------------------------------------------------------------

def count_groups(counts: np.ndarray, max_exact: int = 3) -> list[tuple[str, int, int]]:
    """(name, lowest, highest) label-count groups the data allow: 0, 1, ..., max_exact, >max_exact.

    A group appears only when some image falls in it; `highest` is inclusive (a large
    number for the open-ended group).
    """
    present = set(int(c) for c in np.unique(counts))
    groups = [(str(c), c, c) for c in range(max_exact + 1) if c in present]
    if any(c > max_exact for c in present):
        groups.append((f">{max_exact}", max_exact + 1, 1 << 30))
    return groups


# --- per model ----------------------------------------------------------------------------

@dataclass
class ModelResult:
    model: str
    images: int                 # predictions matched to labelled images
    unmatched: int              # predictions whose key is not in the labels
    top1: float                 # percent, against the original labels
    top5: float
    real_top1: float            # percent, images with an empty set left out
    real_top5: float
    real_images: int
    source: str = ""
    residual: float = float("nan")  # ReaL minus the fit's value at this top-1


@dataclass
class GroupResult:
    model: str
    label_count: str
    n: int
    correct: int
    accuracy: float             # percent, top-1 against the original label
    normal_half_width: float    # percent
    wilson_low: float
    wilson_high: float
    paper_margin: float         # percent, the paper's formula (for comparison only)
    real_n: int
    real_accuracy: float        # percent, ReaL top-1 within the group


@dataclass
class Fit:
    slope: float
    intercept: float
    r2: float
    models: int
    outliers: list[dict] = field(default_factory=list)


def evaluate_model(pred: Predictions, labels: LabelTable, groups: list[tuple[str, int, int]]) -> tuple[ModelResult, list[GroupResult]]:
    """All numbers for one model on the images it shares with the labels."""
    rows = labels.matcher.align(pred.keys)
    hit = rows != MISSING
    if not hit.any():
        raise UserError(f"no image of {pred.source or pred.model} is in the labels (compared by key and file name)")
    rows, ranked = rows[hit], pred.ranked[hit]
    if len(np.unique(rows)) != len(rows):
        raise UserError(f"{pred.source or pred.model} predicts some image of the labels twice")
    sets = [labels.labels[r] for r in rows]
    original = labels.original[rows]
    if pred.labels is not None:  # the predictions file knows the original labels too
        own = pred.labels[hit]
        original = np.where(original == MISSING, own, original)
    known = original != MISSING
    k5 = ranked.shape[1] >= 5

    def top(k: int) -> float:
        if not known.any() or ranked.shape[1] < k:
            return float("nan")
        return metrics.topk_accuracy(ranked[known], original[known], k)

    def real(k: int, mask: np.ndarray | None = None) -> float:
        chosen = sets if mask is None else [s for s, m in zip(sets, mask) if m]
        r = ranked if mask is None else ranked[mask]
        return metrics.real_accuracy(r, chosen, k) if len(chosen) and r.shape[1] >= k else float("nan")

    result = ModelResult(model=pred.model, images=int(hit.sum()), unmatched=int((~hit).sum()),
                         top1=top(1), top5=top(5) if k5 else float("nan"),
                         real_top1=real(1), real_top5=real(5) if k5 else float("nan"),
                         real_images=sum(1 for s in sets if s), source=pred.source)
    counts = np.fromiter((len(s) for s in sets), dtype=np.int64, count=len(sets))
    correct = ranked[:, 0] == original
    per_group = []
    for name, low, high in groups:
        in_group = (counts >= low) & (counts <= high)
        mask = in_group & known
        n = int(mask.sum())
        c = int(correct[mask].sum())
        p = c / n if n else float("nan")
        lo, hi = wilson_interval(p, n)
        per_group.append(GroupResult(
            model=pred.model, label_count=name, n=n, correct=c, accuracy=100 * p,
            normal_half_width=100 * normal_half_width(p, n), wilson_low=100 * lo, wilson_high=100 * hi,
            paper_margin=100 * paper_margin(p, n), real_n=int((in_group & (counts > 0)).sum()),
            real_accuracy=real(1, in_group) if low > 0 or high > 0 else float("nan")))
    return result, per_group


# --- across models --------------------------------------------------------------------------

def linear_fit(x: Sequence[float], y: Sequence[float], names: Sequence[str], outliers: int = 5) -> Fit | None:
    """Least-squares line y = slope·x + intercept with R², and the models furthest from it.

    None when fewer than two models have both numbers or all their x are equal.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2 or np.ptp(x[ok]) == 0:
        return None
    xs, ys = x[ok], y[ok]
    dx, dy = xs - xs.mean(), ys - ys.mean()
    slope = float((dx * dy).sum() / (dx * dx).sum())
    intercept = float(ys.mean() - slope * xs.mean())
    residual = ys - (slope * xs + intercept)
    ss_tot = float((dy * dy).sum())
    r2 = 1 - float((residual ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan")
    named = [n for n, o in zip(names, ok) if o]
    order = np.argsort(-np.abs(residual), kind="stable")[:outliers]
    return Fit(slope, intercept, r2, int(ok.sum()),
               [{"model": named[i], "top1": float(xs[i]), "real_top1": float(ys[i]), "residual": float(residual[i])}
                for i in order])


@dataclass
class Evaluation:
    models: list[ModelResult]
    groups: list[GroupResult]
    fit: Fit | None
    label_groups: list[str]
    labels_source: str
    notes: list[str]


def evaluate(predictions: Sequence[Predictions], labels: LabelTable, max_exact: int = 3,
             outliers: int = 5, progress: bool = False) -> Evaluation:
    """Every model's numbers, then the fit of ReaL on top-1 across them."""
    from tqdm import tqdm

    groups = count_groups(labels.counts, max_exact)
    models, per_group, notes = [], [], list(labels.notes)
    for pred in tqdm(predictions, desc="models", unit="model", disable=not progress):
        result, rows = evaluate_model(pred, labels, groups)
        if result.unmatched:
            notes.append(f"{result.model}: {result.unmatched} prediction(s) for images not in the labels were left out")
        if result.images < len(labels):
            notes.append(f"{result.model}: predictions for {result.images} of {len(labels)} labelled images")
        models.append(result)
        per_group.extend(rows)
    fit = linear_fit([m.top1 for m in models], [m.real_top1 for m in models], [m.model for m in models], outliers)
    if fit is not None:
        for m in models:
            m.residual = m.real_top1 - (fit.slope * m.top1 + fit.intercept)
    return Evaluation(models, per_group, fit, [g[0] for g in groups], labels.source, notes)


# --- files ----------------------------------------------------------------------------------

def write_evaluation(ev: Evaluation, out: Path) -> list[Path]:
    """models.csv, by_label_count.csv, fit.json and evaluation.json in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    written = [_write_csv(out / MODELS_CSV, [asdict(m) for m in ev.models]),
               _write_csv(out / BY_COUNT_CSV, [asdict(g) for g in ev.groups])]
    fit = asdict(ev.fit) if ev.fit is not None else None
    (out / FIT_JSON).write_text(json.dumps(_finite(fit), indent=1) + "\n", encoding="utf-8")
    summary = {"labels": ev.labels_source, "label_groups": ev.label_groups, "models": len(ev.models), "notes": ev.notes}
    (out / SUMMARY_JSON).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return written + [out / FIT_JSON, out / SUMMARY_JSON]


def _finite(value):
    """JSON has no NaN: write null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _write_csv(path: Path, rows: list[dict]) -> Path:
    if not rows:
        path.write_text("", encoding="utf-8")
        return path
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(v) for k, v in row.items()})
    return path


def _fmt(value):
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.6g}"
    return value


@dataclass
class LoadedEvaluation:
    """What the report reads back from an evaluation folder (pandas frames)."""
    models: "object"
    groups: "object"
    fit: dict | None
    summary: dict


def read_evaluation(folder: Path) -> LoadedEvaluation:
    """Read an `evaluate --out` folder back; a clear error when it is not one."""
    import pandas as pd

    folder = Path(folder)
    if not (folder / MODELS_CSV).is_file():
        raise UserError(f"evaluation folder {str(folder)!r} has no {MODELS_CSV} (run `multilabelfy-analyze evaluate`)")
    models = pd.read_csv(folder / MODELS_CSV)
    groups = pd.read_csv(folder / BY_COUNT_CSV, dtype={"label_count": str}) if (folder / BY_COUNT_CSV).is_file() \
        and (folder / BY_COUNT_CSV).stat().st_size else None
    fit = json.loads((folder / FIT_JSON).read_text(encoding="utf-8")) if (folder / FIT_JSON).is_file() else None
    summary = json.loads((folder / SUMMARY_JSON).read_text(encoding="utf-8")) if (folder / SUMMARY_JSON).is_file() else {}
    return LoadedEvaluation(models, groups, fit, summary)
