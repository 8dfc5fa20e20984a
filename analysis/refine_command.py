"""`multilabelfy-analyze refine`: refinement pages, assignments and links for the refiners."""
from __future__ import annotations

import argparse

from multilabelfy.analysis.inputs import add_input_options
from multilabelfy.collector.clitools import add_command, name_list, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers, "refine", run=run,
        help="build refinement pages for the images the annotators disagreed on",
        description="Select the images whose status is disagreed or original-missing, split them evenly and "
                    "deterministically over the refiners, render their pages with the annotate stage's renderer "
                    "and settings (first-stage choices pre-checked, with vote counts and comments), add stage "
                    "'refine' to manifest.json and assignments.json, and append one secret link per refiner and "
                    "batch to PRIVATE_DIR/links.csv. A running collector picks the new stage up by itself (it "
                    "re-reads manifest.json and tokens.json when they change).")
    add_input_options(parser)
    parser.add_argument("--refiners", type=name_list, required=True, help="comma-separated refiners, e.g. carol,erin")
    parser.add_argument("--per-image", type=positive_int, default=1,
                        help="refiners per image (finalize keeps a label chosen by at least half of them)")
    parser.add_argument("--include-incomplete", action="store_true",
                        help="also refine images an assigned annotator has not answered")
    parser.add_argument("--replace", action="store_true",
                        help="rebuild an existing refine stage even if its pages or refiners change")
    parser.add_argument("--dry-run", action="store_true", help="print the split, render and write nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    import sys

    from multilabelfy.analysis import disagreement, refine
    from multilabelfy.analysis.inputs import load_from_args

    result = disagreement.analyse(load_from_args(args))
    new = refine.plan(result, args.refiners, per_image=args.per_image, include_incomplete=args.include_incomplete)
    total = sum(len(s) for s in new.specs.values())
    counts = result.counts()
    print(f"{total:,} images to refine (disagreed {counts['disagreed']:,}, original-missing "
          f"{counts['original-missing']:,}" + (f", incomplete {counts['incomplete']:,}" if args.include_incomplete
                                               else f"; {counts['incomplete']:,} incomplete left out") + ")")
    for person, n in new.per_refiner().items():
        print(f"  {person}: {n:,} pages")
    if not total:
        print("nothing to refine")
        return 0
    if args.dry_run:
        return 0
    refine.check_replace(result, new, args.replace)
    refine.build(result, new, progress=not args.no_progress and sys.stderr.isatty())
    print(f"added stage refine ({len(new.specs)} batch{'es' if len(new.specs) != 1 else ''}) to {args.site / 'manifest.json'}; links for the refiners "
          f"are in {args.private / 'links.csv'} (stage refine). A running collector picks the stage up by itself.")
    return 0
