"""`multilabelfy-analyze report`: the results as one static HTML page with figures."""
from __future__ import annotations

import argparse
from pathlib import Path

from multilabelfy.analysis.evaluate_command import add_labels_options
from multilabelfy.build.data_commands import CATALOG_HELP
from multilabelfy.collector.clitools import UserError, add_command, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    cmd = add_command(
        subparsers, "report", run=run,
        help="render the results (label counts, ReaL vs top-1, accuracy per label count, ...) as an HTML page",
        description="Write REPORT_DIR/index.html: the label-count distribution, how often the original label "
                    "is kept, the images no label fits (by reason, with thumbnails given --images), and, when "
                    "given, the models' ReaL-vs-top-1 fit and accuracy per label count (--evaluation) and the "
                    "agreement statistics and refinement funnel (--disagreement). Figures are PNG and SVG files "
                    "beside the page; it opens offline.")
    add_labels_options(cmd)
    cmd.add_argument("--evaluation", type=Path, default=None, metavar="DIR",
                     help="folder written by `multilabelfy-analyze evaluate`")
    cmd.add_argument("--disagreement", type=Path, default=None, metavar="DIR",
                     help="folder written by `multilabelfy-analyze disagreement` (agreement.json, disagreement.csv)")
    cmd.add_argument("--images", type=Path, default=None, metavar="DATA_DIR",
                     help="dataset root, to show thumbnails of the images left without a label")
    cmd.add_argument("--catalog", default="imagenet-1k", help=CATALOG_HELP + "; used for class names")
    cmd.add_argument("--title", default="Multi-label results", help="the page's title")
    cmd.add_argument("--max-thumbnails", type=positive_int, default=48,
                     help="most thumbnails shown per reason for an empty label set")
    cmd.add_argument("--out", type=Path, required=True, metavar="REPORT_DIR",
                     help="folder for index.html and its figures (created if needed)")


def run(args: argparse.Namespace) -> int:
    from multilabelfy.analysis.evaluate import read_evaluation
    from multilabelfy.analysis.labels_io import load_labels
    from multilabelfy.analysis.report import ReportInputs, read_disagreement, render_report

    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {str(args.out)!r} is a file, not a folder")
    if args.images is not None and not args.images.is_dir():
        raise UserError(f"--images {str(args.images)!r} is not a folder")
    labels = load_labels(args.labels, args.original)
    inputs = ReportInputs(
        labels=labels,
        evaluation=read_evaluation(args.evaluation) if args.evaluation is not None else None,
        disagreement=read_disagreement(args.disagreement) if args.disagreement is not None else None,
        images=args.images, class_names=_class_names(args.catalog), title=args.title,
        max_thumbnails=args.max_thumbnails)
    page = render_report(inputs, args.out)
    print(f"report written to {page}")
    return 0


def _class_names(spec: str) -> list[str]:
    from multilabelfy.build.catalog import load_catalog

    return [c.name for c in load_catalog(spec)]
