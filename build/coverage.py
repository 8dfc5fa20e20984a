"""Coverage report: does the original label lie within the K proposals annotators see?

If the dataset's own label often ranks below K, annotators can only judge it because the
page adds it; the report says how often that happens and which K would cover 95%, 99%
and 99.9% of images, so a user can tell whether K = 20 is enough for their data.
"""
from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from multilabelfy.collector.formats import atomic_write_text

WITHIN = (1, 5, 10, 20)
TARGETS = (0.95, 0.99, 0.999)
#: Rank bins of the printed distribution (upper bounds, inclusive); the CSV keeps every rank.
BINS = (1, 2, 3, 4, 5, 10, 20, 50, 100, 200, 500)


def smallest_k(ranks: Sequence[int], target: float) -> int | None:
    """The smallest K with rank <= K for at least `target` of the images (None without images)."""
    if not ranks:
        return None
    ordered = sorted(ranks)
    return int(ordered[max(0, math.ceil(target * len(ordered)) - 1)])


def coverage_report(ranks: Sequence[int], top_k: int | None = None) -> dict[str, Any]:
    """Figures from the 1-based ranks of the original labels (the table's `label_rank`)."""
    ranks = [int(r) for r in ranks]
    n = len(ranks)
    within_ks = sorted(set(WITHIN) | ({top_k} if top_k else set()))
    counts = Counter(ranks)
    bins, low = [], 1
    for high in (*BINS, None):
        count = sum(c for r, c in counts.items() if r >= low and (high is None or r <= high))
        label = str(low) if high == low else f"{low}+" if high is None else f"{low}-{high}"
        bins.append({"ranks": label, "images": count, "fraction": count / n if n else None})
        if high is None:
            break
        low = high + 1
    return {
        "images": n,
        "top_k": top_k,
        "within": {str(k): (sum(1 for r in ranks if r <= k) / n if n else None) for k in within_ks},
        "smallest_k": {f"{t:g}": smallest_k(ranks, t) for t in TARGETS},
        "label_added": sum(1 for r in ranks if top_k and r > top_k),
        "median_rank": float(sorted(ranks)[(n - 1) // 2]) if n else None,
        "distribution": bins,
        "ranks": {str(r): c for r, c in sorted(counts.items())},
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as a few lines for the terminal."""
    n = report["images"]
    if not n:
        return "Coverage: no images."
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
    lines = [f"Coverage of the original label ({n} images):",
             "  within top " + ", ".join(f"{k}: {pct(v)}" for k, v in report["within"].items()),
             "  smallest K covering " + ", ".join(f"{100 * float(t):g}%: {k}" for t, k in report["smallest_k"].items()),
             "  rank distribution: " + ", ".join(f"{b['ranks']}: {b['images']}" for b in report["distribution"]
                                                 if b["images"])]
    top_k = report.get("top_k")
    if top_k:
        added = report["label_added"]
        need = report["smallest_k"]["0.99"]
        verdict = (f"K = {top_k} covers {pct(report['within'][str(top_k)])} of the images; "
                   f"the other {added} get their original label added to the page.")
        if need is not None and need > top_k:
            verdict += f" K = {need} would cover 99%."
        lines.append("  " + verdict)
    return "\n".join(lines)


def report_paths(table: Path) -> tuple[Path, Path]:
    """`proposals.parquet` -> `proposals.coverage.json`, `proposals.coverage.csv` (beside it)."""
    base = Path(table).with_suffix("")
    return base.with_name(base.name + ".coverage.json"), base.with_name(base.name + ".coverage.csv")


def save_report(report: dict[str, Any], table: Path) -> tuple[Path, Path]:
    """Write the JSON summary and the CSV of every rank (rank, images, cumulative fraction)."""
    json_path, csv_path = report_paths(table)
    atomic_write_text(json_path, json.dumps(report, indent=1) + "\n")
    n, cumulative = report["images"], 0
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["rank", "images", "cumulative_fraction"])
        for rank, count in report["ranks"].items():
            cumulative += count
            writer.writerow([rank, count, f"{cumulative / n:.6f}"])
    return json_path, csv_path
