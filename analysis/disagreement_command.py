"""`multilabelfy-analyze disagreement`: statuses, the choices table and agreement statistics."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from multilabelfy.analysis.inputs import add_input_options
from multilabelfy.collector import formats
from multilabelfy.collector.clitools import UserError, add_command, positive_int

TABLE_CSV, TABLE_PARQUET, AGREEMENT_JSON = "disagreement.csv", "disagreement.parquet", "agreement.json"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers, "disagreement", run=run,
        help="find the images the annotators disagree on, and measure their agreement",
        description="Give every image a status (agreed, disagreed, original-missing, incomplete) from the latest "
                    "annotate record of each assigned annotator; write DIR/disagreement.csv and .parquet (one row "
                    "per image with everyone's choices) and DIR/agreement.json (exact match, Jaccard, "
                    "Krippendorff's alpha with MASI distance, per-label binary alpha).")
    add_input_options(parser)
    parser.add_argument("--out", metavar="DIR", type=Path, required=True,
                        help="folder for disagreement.csv, disagreement.parquet and agreement.json")
    parser.add_argument("--min-label-units", type=positive_int, default=20,
                        help="per-label alpha only for labels shown on at least this many images answered twice")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed for the sampled expected disagreement (only used with very many distinct sets)")


def prepare_out(path: Path) -> Path:
    """Create an output folder (and parents); a clear error when it is a file."""
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {str(path)!r} is a file, not a folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


def run(args: argparse.Namespace) -> int:
    from multilabelfy.analysis import agreement, disagreement
    from multilabelfy.analysis.inputs import load_from_args, write_csv

    out = prepare_out(args.out)
    inputs = load_from_args(args)
    result = disagreement.analyse(inputs)
    frame = disagreement.table(result)
    write_csv(frame, out / TABLE_CSV)
    tmp = out / f".{TABLE_PARQUET}.tmp"
    frame.to_parquet(tmp, index=False)
    tmp.replace(out / TABLE_PARQUET)
    stats = agreement.agreement(result.answers, min_units=args.min_label_units, seed=args.seed)
    formats.atomic_write_text(out / AGREEMENT_JSON, json.dumps(stats, indent=1) + "\n")
    print_summary(result, stats)
    print(f"wrote {out / TABLE_CSV}, {out / TABLE_PARQUET}, {out / AGREEMENT_JSON}")
    return 0


def print_summary(result, stats: dict) -> None:
    from multilabelfy.analysis import disagreement

    store = result.inputs.store
    counts = result.counts()
    total = sum(counts.values())
    need = counts[disagreement.DISAGREED] + counts[disagreement.ORIGINAL_MISSING]
    print(f"{need:,} of {total:,} images need refinement (disagreed {counts['disagreed']:,}, original-missing "
          f"{counts['original-missing']:,}); agreed {counts['agreed']:,}; incomplete {counts['incomplete']:,}")
    answered = int(result.answers.slots["answered"].sum())
    print(f"store: {store.total_records:,} records read; {answered:,} annotate answers count "
          f"(the latest per image and assigned annotator)")
    if not answered:
        print("nothing answered yet: every image is incomplete")
    if len(result.answers.unassigned):
        first = result.answers.unassigned.iloc[0]
        print(f"warning: {len(result.answers.unassigned):,} annotate record(s) match no assigned page, ignored "
              f"(first: image {first['image']!r} by {first['annotator']!r})")
    parts = disagreement.summary(result)
    print("\nper batch:")
    print(parts["per_batch"].to_string())
    print("\nper annotator:")
    print(parts["per_annotator"].to_string(na_rep="-"))
    labels = [x["alpha"] for x in stats["per_label_alpha"] if x["alpha"] is not None]
    median = f"{sorted(labels)[len(labels) // 2]:.3f}" if labels else "n/a"

    def fmt(x):
        return "n/a" if x is None else f"{x:.3f}"

    print(f"\nagreement over {stats['units']:,} images with two or more answers: exact match "
          f"{fmt(stats['exact_match_rate'])}, mean Jaccard {fmt(stats['mean_jaccard'])}, Krippendorff's alpha "
          f"(MASI) {fmt(stats['krippendorff_alpha_masi'])} ({stats['alpha_method']}); per-label alpha for "
          f"{len(stats['per_label_alpha'])} labels (median {median})")
