"""The results report: one static HTML page with figures and the numbers beside them.

It reproduces the paper's findings from anyone's labels: the label-count distribution
(Figure 3), ReaL vs top-1 over many models (Figure 4), accuracy per label count with its
uncertainty (Figure 5), the images no label fits (Section 4.4), how often the original
label survives, and the agreement and refinement funnel. Every input beyond the labels is
optional: a missing piece drops its section and says why, instead of failing the page.
The page needs no network: figures are files beside it (PNG shown, SVG linked), the CSS
is inlined.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from multilabelfy.analysis.evaluate import LoadedEvaluation
from multilabelfy.analysis.labels_io import MISSING, LabelTable, reason_text
from multilabelfy.collector.clitools import UserError

FIGURES = "figures"
THUMBS = "thumbs"
PAGE = "index.html"
SENT_TO_REFINEMENT = ("disagreed", "original-missing")
DISAGREEMENT_TABLES = ("disagreement.parquet", "disagreement.csv")
AGREEMENT_JSON = "agreement.json"


@dataclass
class Disagreement:
    """What the report uses from `disagreement --out DIR`: statuses and agreement statistics."""
    status_counts: dict[str, int]
    agreement: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)


def read_disagreement(folder: Path) -> Disagreement:
    """Read the disagreement folder defensively: what is missing is noted, not fatal."""
    import pandas as pd

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--disagreement {str(folder)!r} is not a folder")
    notes: list[str] = []
    counts: dict[str, int] = {}
    for name in DISAGREEMENT_TABLES:
        path = folder / name
        if not path.is_file():
            continue
        try:
            frame = pd.read_parquet(path, columns=["status"]) if name.endswith(".parquet") \
                else pd.read_csv(path, usecols=["status"])
        except Exception as exc:  # pandas/pyarrow raise many types for damaged or foreign files
            notes.append(f"{path} is unreadable ({exc.__class__.__name__}): statuses left out")
            continue
        counts = {str(k): int(v) for k, v in frame["status"].value_counts().items()}
        break
    else:
        notes.append(f"{folder} has no disagreement table: the refinement funnel is left out")
    agreement = None
    path = folder / AGREEMENT_JSON
    if path.is_file():
        try:
            agreement = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            notes.append(f"{path} is not valid JSON: agreement statistics left out")
    else:
        notes.append(f"{folder} has no {AGREEMENT_JSON}: agreement statistics are left out")
    return Disagreement(counts, agreement if isinstance(agreement, dict) else None, notes)


@dataclass
class ReportInputs:
    labels: LabelTable
    evaluation: LoadedEvaluation | None = None
    disagreement: Disagreement | None = None
    images: Path | None = None          # dataset root, for thumbnails of the zero-label images
    class_names: list[str] | None = None
    title: str = "Multi-label results"
    max_thumbnails: int = 48


# --- numbers ------------------------------------------------------------------------------

def pct(part: float, whole: float) -> str:
    """A share as the page shows it, e.g. '50.83%'."""
    return f"{100 * part / whole:.2f}%" if whole else "–"


def label_count_numbers(labels: LabelTable) -> dict[str, Any]:
    """The distribution in the paper's grouping (0, 1, 2, >2) and per exact count."""
    counts = labels.counts
    n = len(counts)
    exact = Counter(int(c) for c in counts)
    groups = [("0", int((counts == 0).sum())), ("1", int((counts == 1).sum())),
              ("2", int((counts == 2).sum())), (">2", int((counts > 2).sum()))]
    return {
        "images": n, "labels": int(counts.sum()), "mean": float(counts.mean()) if n else 0.0,
        "groups": [{"name": g, "count": c, "pct": pct(c, n)} for g, c in groups],
        "exact": [{"name": str(k), "count": v, "pct": pct(v, n)} for k, v in sorted(exact.items())],
    }


def original_numbers(labels: LabelTable) -> dict[str, Any] | None:
    """How often the dataset's original label is among the final labels."""
    if not labels.has_original:
        return None
    inside = labels.original_in_set()
    known = labels.original != MISSING
    counts = labels.counts[known]
    single = counts == 1
    return {"known": int(inside.size), "inside": int(inside.sum()), "pct": pct(inside.sum(), inside.size),
            "outside": int((~inside).sum()),
            "outside_nonempty": int((~inside & (counts > 0)).sum()),
            "single_replaced": int((~inside & single).sum())}


# --- figures ------------------------------------------------------------------------------

def _save(fig, out: Path, name: str) -> dict[str, str]:
    """PNG for the page, SVG for print; paths relative to the page."""
    folder = out / FIGURES
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / f"{name}.png", dpi=110, bbox_inches="tight")
    fig.savefig(folder / f"{name}.svg", bbox_inches="tight")
    return {"png": f"{FIGURES}/{name}.png", "svg": f"{FIGURES}/{name}.svg"}


def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def figure_label_counts(numbers: dict[str, Any], out: Path) -> dict[str, str]:
    exact = numbers["exact"]
    fig, ax = _figure(6.4, 3.4)
    names = [e["name"] for e in exact]
    values = [100 * e["count"] / numbers["images"] for e in exact]
    bars = ax.bar(names, values, color="#3b6ea8")
    ax.bar_label(bars, labels=[f"{v:.1f}" for v in values], fontsize=8)
    ax.set_xlabel("number of labels per image")
    ax.set_ylabel("% of images")
    ax.set_title("Label-count distribution")
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, out, "label_counts")


def figure_scatter(models, fit: dict | None, out: Path) -> dict[str, str]:
    fig, ax = _figure(6.4, 4.6)
    x, y = models["top1"].to_numpy(float), models["real_top1"].to_numpy(float)
    ax.scatter(x, y, s=22, color="#3b6ea8", zorder=3)
    if fit:
        xs = np.linspace(np.nanmin(x), np.nanmax(x), 50)
        ax.plot(xs, fit["slope"] * xs + fit["intercept"], color="#c0392b",
                label=f"ReaL = {fit['slope']:.4f}·top-1 {_signed(fit['intercept'])}, R² = {_r2(fit)}")
        ax.legend(loc="lower right", fontsize=8)
        for o in fit.get("outliers", [])[:5]:
            ax.annotate(o["model"], (o["top1"], o["real_top1"]), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")
    else:
        for name, xi, yi in zip(models["model"], x, y):
            ax.annotate(str(name), (xi, yi), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("top-1 accuracy (original labels), %")
    ax.set_ylabel("ReaL top-1 accuracy (final labels), %")
    ax.set_title("ReaL vs top-1 accuracy")
    ax.grid(alpha=0.3)
    return _save(fig, out, "real_vs_top1")


def _signed(value: float) -> str:
    """`+ 3.20` or `− 1.01`: an intercept written the way people read an equation."""
    return f"{'−' if value < 0 else '+'} {abs(value):.2f}"


def _r2(fit: dict) -> str:
    r2 = fit.get("r2")
    return f"{100 * r2:.2f}%" if isinstance(r2, (int, float)) and math.isfinite(r2) else "–"


def heatmap_matrix(groups, column: str, models: list[str], counts: list[str]) -> np.ndarray:
    """model × label-count matrix of `column`; NaN where n ≤ 1 (no meaningful estimate)."""
    matrix = np.full((len(models), len(counts)), np.nan)
    row = {m: i for i, m in enumerate(models)}
    col = {c: j for j, c in enumerate(counts)}
    for rec in groups.itertuples(index=False):
        if rec.model in row and rec.label_count in col and rec.n > 1:
            matrix[row[rec.model], col[rec.label_count]] = getattr(rec, column)
    return matrix


def figure_heatmap(matrix: np.ndarray, models: list[str], counts: list[str], title: str, cmap: str,
                   out: Path, name: str, vmin: float = 0.0, vmax: float | None = None) -> dict[str, str]:
    """A fixed scale (accuracy 0-100, half-widths from 0), so equal colours mean equal values
    across reports; cell text switches to white on dark cells."""
    import matplotlib

    fig, ax = _figure(1.6 + 0.9 * len(counts) + 0.06 * max(len(m) for m in models), 1.3 + 0.32 * len(models))
    colours = matplotlib.colormaps[cmap].with_extremes(bad="#d9d9d9")
    finite = matrix[np.isfinite(matrix)]
    highest = float(finite.max()) if finite.size else vmin
    top = vmax if vmax is not None else (highest if highest > vmin else vmin + 1.0)  # all-zero: a plain 0-1 bar
    norm = matplotlib.colors.Normalize(vmin=vmin, vmax=top)
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=colours, norm=norm, aspect="auto")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(len(counts)), counts)
    ax.set_yticks(range(len(models)), models, fontsize=8)
    ax.set_xlabel("number of labels")
    ax.set_title(title)
    for (i, j), value in np.ndenumerate(matrix):
        if math.isnan(value):
            ax.text(j, i, "n≤1", ha="center", va="center", fontsize=7, color="#555")
            continue
        r, g, b, _ = colours(norm(value))
        dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
        ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=7, color="white" if dark else "black")
    return _save(fig, out, name)


def figure_funnel(steps: list[tuple[str, int]], out: Path) -> dict[str, str]:
    fig, ax = _figure(6.4, 0.6 + 0.55 * len(steps))
    names = [s[0] for s in steps][::-1]
    values = [s[1] for s in steps][::-1]
    bars = ax.barh(names, values, color="#3b6ea8")
    ax.bar_label(bars, labels=[f"{v:,}" for v in values], fontsize=8, padding=3)
    ax.set_xlabel("images")
    ax.set_title("Refinement funnel")
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, out, "funnel")


# --- thumbnails ---------------------------------------------------------------------------

class ImageFinder:
    """Finds an image file under the dataset root from a key or a bare file name."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._by_name: dict[str, Path] | None = None

    def find(self, key: str, original: int) -> Path | None:
        candidates = [self.root / key]
        if original != MISSING:
            candidates.append(self.root / str(original) / Path(key).name)  # ImageNetV2 layout
        for path in candidates:
            if path.is_file() and self.root.resolve() in path.resolve().parents:
                return path
        if self._by_name is None:
            self._by_name = {p.name: p for p in self.root.rglob("*") if p.is_file()}
        return self._by_name.get(Path(key).name)


def make_thumbnail(source: Path, out: Path, key: str, size: int = 160) -> str | None:
    """A small JPEG of one image beside the page; None when the file does not decode."""
    from PIL import Image, UnidentifiedImageError

    folder = out / THUMBS
    folder.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha1(key.encode()).hexdigest()[:16] + ".jpg"
    try:
        with Image.open(source) as image:
            image = image.convert("RGB")
            image.thumbnail((size, size))
            image.save(folder / name, quality=85)
    except (OSError, UnidentifiedImageError):
        return None
    return f"{THUMBS}/{name}"


def zero_label_numbers(inputs: ReportInputs, out: Path) -> dict[str, Any]:
    """Zero-label images grouped by their annotators' reason, with thumbnails when possible."""
    labels = inputs.labels
    empty = [i for i, s in enumerate(labels.labels) if not s]
    reasons = labels.empty_reason or [""] * len(labels)
    finder = ImageFinder(inputs.images) if inputs.images else None
    by_reason: dict[str, list[int]] = {}
    for i in empty:
        by_reason.setdefault(reasons[i], []).append(i)
    groups, missing_files = [], 0
    for reason, rows in sorted(by_reason.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        items = []
        for i in rows[: inputs.max_thumbnails]:
            original = int(labels.original[i])
            item = {"key": labels.keys[i], "original": _class_label(original, inputs.class_names), "thumb": None}
            if finder is not None:
                path = finder.find(labels.keys[i], original)
                item["thumb"] = make_thumbnail(path, out, labels.keys[i]) if path else None
                missing_files += item["thumb"] is None
            items.append(item)
        groups.append({"reason": reason or "unknown", "text": reason_text(reason), "count": len(rows),
                       "pct": pct(len(rows), len(empty)), "shown": items, "more": max(0, len(rows) - len(items))})
    notes = []
    if labels.empty_reason is None and empty:
        notes.append("the labels do not record why an image has no label (only finalize's labels.csv does)")
    if finder is None and empty:
        notes.append("no thumbnails: pass --images DATA_DIR to show the images")
    elif missing_files:
        notes.append(f"{missing_files} zero-label image(s) were not found or did not decode under {inputs.images}")
    return {"count": len(empty), "pct": pct(len(empty), len(labels)), "groups": groups, "notes": notes}


def _class_label(index: int, names: list[str] | None) -> str:
    if index == MISSING:
        return "unknown"
    if names and 0 <= index < len(names):
        return f"{index} ({names[index]})"
    return str(index)


# --- sections -----------------------------------------------------------------------------

def evaluation_section(ev: LoadedEvaluation, out: Path) -> dict[str, Any]:
    """Model table, scatter with fit, and the per-label-count heatmaps with their numbers."""
    models = ev.models
    section: dict[str, Any] = {"models": models.to_dict("records"), "fit": ev.fit,
                               "r2": _r2(ev.fit) if ev.fit else None, "notes": list(ev.summary.get("notes", []))}
    if len(models) >= 2:
        section["scatter"] = figure_scatter(models, ev.fit, out)
        if not ev.fit:
            section["notes"].append("no linear fit: it needs at least two models with different top-1 accuracy "
                                    "(and top-1 needs the original labels)")
    else:
        section["notes"].append("the ReaL-vs-top-1 fit needs at least two models")
    groups = ev.groups
    if groups is not None and len(groups):
        names = list(dict.fromkeys(groups["model"]))
        counts = list(ev.summary.get("label_groups") or dict.fromkeys(groups["label_count"]))
        accuracy = heatmap_matrix(groups, "accuracy", names, counts)
        half = heatmap_matrix(groups, "normal_half_width", names, counts)
        section["heatmap_accuracy"] = figure_heatmap(accuracy, names, counts, "top-1 accuracy, %", "viridis",
                                                     out, "accuracy_by_label_count", vmax=100.0)
        section["heatmap_half_width"] = figure_heatmap(half, names, counts, "95% interval half-width, points",
                                                       "magma_r", out, "half_width_by_label_count")
        section["counts"] = counts
        section["cells"] = [{"model": m, "cells": [_cell(groups, m, c) for c in counts]} for m in names]
    return section


def _cell(groups, model: str, count: str) -> dict[str, Any]:
    rows = groups[(groups["model"] == model) & (groups["label_count"] == count)]
    if rows.empty:
        return {"missing": True, "n": 0}
    r = rows.iloc[0]
    if r["n"] <= 1:
        return {"missing": True, "n": int(r["n"])}
    return {"missing": False, "n": int(r["n"]), "accuracy": f"{r['accuracy']:.1f}",
            "half": f"{r['normal_half_width']:.1f}", "wilson": f"{r['wilson_low']:.1f}–{r['wilson_high']:.1f}"}


def agreement_section(dis: Disagreement, labels: LabelTable, out: Path,
                      class_names: list[str] | None) -> dict[str, Any]:
    """Status counts, agreement statistics and the funnel images → disagreed → refined."""
    section: dict[str, Any] = {"notes": list(dis.notes), "statuses": [], "stats": [], "per_label": []}
    total = sum(dis.status_counts.values())
    if total:
        section["statuses"] = [{"status": s, "count": c, "pct": pct(c, total)}
                               for s, c in sorted(dis.status_counts.items(), key=lambda kv: -kv[1])]
        sent = sum(dis.status_counts.get(s, 0) for s in SENT_TO_REFINEMENT)
        steps = [("images", total), ("sent to refinement", sent)]
        if labels.status is not None and any(labels.status):
            steps.append(("refined", sum(1 for s in labels.status if s == "refined")))
        else:
            section["notes"].append("the labels carry no status: the 'refined' step is left out")
        section["funnel_steps"] = [{"name": n, "count": c, "pct": pct(c, total)} for n, c in steps]
        section["funnel"] = figure_funnel(steps, out)
    agreement = dis.agreement or {}
    for key, name, scale in (("exact_match_rate", "exact-match rate", 100), ("mean_jaccard", "mean pairwise Jaccard", 1),
                             ("krippendorff_alpha_masi", "Krippendorff's α (MASI distance)", 1)):
        value = agreement.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            section["stats"].append({"name": name, "value": f"{value * scale:.2f}%" if scale == 100 else f"{value:.3f}"})
    per_label = [p for p in agreement.get("per_label_alpha") or [] if isinstance(p, dict)
                 and isinstance(p.get("alpha"), (int, float)) and math.isfinite(p["alpha"])]
    per_label.sort(key=lambda p: p["alpha"])
    section["per_label"] = [{"label": _class_label(int(p["label"]), class_names), "n": p.get("n", ""),
                             "alpha": f"{p['alpha']:.3f}"} for p in per_label[:15]]
    section["per_label_total"] = len(per_label)
    return section


# --- the page -----------------------------------------------------------------------------

def render_report(inputs: ReportInputs, out: Path) -> Path:
    """Write REPORT_DIR/index.html with its figures and thumbnails; returns the page's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    labels = inputs.labels
    counts = label_count_numbers(labels)
    context: dict[str, Any] = {
        "title": inputs.title, "source": labels.source, "notes": list(labels.notes), "counts": counts,
        "count_figure": figure_label_counts(counts, out), "original": original_numbers(labels),
        "zero": zero_label_numbers(inputs, out), "status": None, "evaluation": None, "agreement": None,
    }
    if context["original"] is None:
        context["notes"].append("no original labels: pass --original FILE to see how often they survive")
    if labels.status is not None and any(labels.status):
        status = Counter(labels.status)
        if labels.waiting:
            status["incomplete (left out)"] = labels.waiting
        whole = len(labels) + labels.waiting
        context["status"] = [{"status": s or "unknown", "count": c, "pct": pct(c, whole)}
                             for s, c in status.most_common()]
    if inputs.evaluation is not None:
        context["evaluation"] = evaluation_section(inputs.evaluation, out)
    else:
        context["notes"].append("no model evaluation: pass --evaluation DIR (from `evaluate`) for Figures 4 and 5")
    if inputs.disagreement is not None:
        context["agreement"] = agreement_section(inputs.disagreement, labels, out, inputs.class_names)
    else:
        context["notes"].append("no agreement statistics: pass --disagreement DIR (from `disagreement`)")
    page = out / PAGE
    page.write_text(_template().render(**context), encoding="utf-8")
    return page


def _template():
    from importlib.resources import files

    import jinja2

    folder = files("multilabelfy.templates") / "report"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["pctnum"] = lambda v: f"{v:.2f}" if isinstance(v, (int, float)) and math.isfinite(v) else "–"
    env.globals["css"] = (folder / "report.css").read_text(encoding="utf-8")
    return env.get_template("report.html.j2")
