"""`multilabelfy-analyze evaluate`: models' accuracy on the final labels, as CSV tables."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from multilabelfy.collector.clitools import UserError, add_command, positive_int

LABELS_HELP = ("final labels: a LABELS_DIR written by `finalize`, the paper's released JSON "
               "{file name: [\"index\", ...]}, or ReaL's JSON list of label lists")
ORIGINAL_HELP = ("the dataset's original labels: JSON {file name: index} or CSV key,label "
                 "(needed when --labels is a JSON file; a LABELS_DIR has them already)")


def add_labels_options(parser: argparse.ArgumentParser) -> None:
    """--labels and --original, shared with `report`."""
    parser.add_argument("--labels", type=Path, required=True, metavar="LABELS", help=LABELS_HELP)
    parser.add_argument("--original", type=Path, default=None, metavar="FILE", help=ORIGINAL_HELP)


def register(subparsers: argparse._SubParsersAction) -> None:
    cmd = add_command(
        subparsers, "evaluate", run=run,
        help="top-1, top-5, ReaL accuracy and accuracy per label count for many models",
        description="Score the predictions of any number of models on the final labels: top-1/top-5 against "
                    "the original labels, ReaL top-1/top-5 (images with an empty set left out), top-1 accuracy "
                    "per label count with normal and Wilson 95% intervals, and the linear fit of ReaL on top-1 "
                    "across models. Writes models.csv, by_label_count.csv, fit.json and evaluation.json.")
    add_labels_options(cmd)
    cmd.add_argument("--predictions", type=Path, nargs="+", required=True, metavar="FILE",
                     help="predictions: Parquet files written by `multilabelfy-build propose` (one model each) "
                          "or CSV files with columns key,model,predictions (space-separated ranked class indices)")
    cmd.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the tables (created if needed)")
    cmd.add_argument("--max-count", type=positive_int, default=3,
                     help="label counts above this are grouped together, e.g. '>3'")
    cmd.add_argument("--outliers", type=positive_int, default=5,
                     help="how many models furthest from the ReaL-vs-top-1 line to list")


def run(args: argparse.Namespace) -> int:
    from multilabelfy.analysis.evaluate import evaluate, read_predictions, write_evaluation
    from multilabelfy.analysis.labels_io import load_labels

    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {str(args.out)!r} is a file, not a folder")
    labels = load_labels(args.labels, args.original)
    predictions = read_predictions(args.predictions)
    result = evaluate(predictions, labels, max_exact=args.max_count, outliers=args.outliers,
                      progress=sys.stderr.isatty())
    write_evaluation(result, args.out)
    print(f"{len(result.models)} model(s) on {len(labels)} labelled images ({labels.source})")
    print(f"{'model':40s} {'top-1':>7s} {'top-5':>7s} {'ReaL':>7s} {'ReaL-5':>7s}")
    for m in result.models:
        print(f"{m.model[:40]:40s} {_pct(m.top1)} {_pct(m.top5)} {_pct(m.real_top1)} {_pct(m.real_top5)}")
    if result.fit is not None:
        f = result.fit
        print(f"ReaL = {f.slope:.4f} * top-1 {'-' if f.intercept < 0 else '+'} {abs(f.intercept):.2f}  (R^2 = {100 * f.r2:.2f}%, {f.models} models)")
    else:
        print("no linear fit: it needs at least two models with different top-1 accuracy")
    for note in result.notes:
        print(f"note: {note}")
    print(f"tables written to {args.out}")
    return 0


def _pct(value: float) -> str:
    return f"{value:7.2f}" if math.isfinite(value) else f"{'-':>7s}"
