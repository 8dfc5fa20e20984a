"""`multilabelfy-analyze finalize`: the final multi-labels in ReaL, CSV and release form."""
from __future__ import annotations

import argparse
from pathlib import Path

from multilabelfy.analysis.inputs import add_input_options
from multilabelfy.collector.clitools import UserError, add_command


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers, "finalize", run=run,
        help="write the final multi-labels (agreed sets and refiners' answers)",
        description="Agreed images keep their agreed set; refined images take their refiners' set (a label chosen "
                    "by at least half of an image's refiners). Writes LABELS_DIR/real_labels.json (ReaL style, "
                    "dataset order), labels.csv and refined_labels.json ({file name: [\"index\", ...]}). Images "
                    "still waiting are listed in waiting.csv and make the command fail, unless --allow-incomplete.")
    add_input_options(parser)
    parser.add_argument("--out", metavar="LABELS_DIR", type=Path, required=True, help="folder for the label files")
    parser.add_argument("--allow-incomplete", action="store_true",
                        help="write the labels even though some images are still waiting (they get an empty "
                             "set in real_labels.json and status incomplete in labels.csv)")
    parser.add_argument("--dawid-skene", action="store_true",
                        help="also fit Dawid-Skene to the first-stage answers: writes dawid_skene_annotators.csv "
                             "(sensitivity, specificity) and dawid_skene_disagreements.csv (image, label pairs where "
                             "the model and the final labels differ)")


def run(args: argparse.Namespace) -> int:
    from multilabelfy.analysis import disagreement, finalize
    from multilabelfy.analysis.disagreement_command import prepare_out
    from multilabelfy.analysis.inputs import load_from_args

    out = prepare_out(args.out)
    result = disagreement.analyse(load_from_args(args))
    final = finalize.finalize(result)
    written = finalize.write_final(out, final, allow_incomplete=args.allow_incomplete)
    counts = final.counts()
    print(f"{len(final.keys):,} images: agreed {counts['agreed']:,}, refined {counts['refined']:,}, "
          f"incomplete {counts['incomplete']:,}")
    if len(final.waiting):
        print(f"{len(final.waiting):,} images are still waiting:")
        for why, n in final.waiting["why"].value_counts().head(10).items():
            print(f"  {n:>8,}  {why}")
        if not args.allow_incomplete:
            raise UserError(f"{len(final.waiting):,} images are still waiting (listed in {out / 'waiting.csv'}); "
                            f"finish them or pass --allow-incomplete")
    dist = finalize.label_count_distribution(final)
    done = max(sum(dist.values()), 1)
    print("labels per image: " + ", ".join(f"{k}: {v:,} ({v / done:.2%})" for k, v in dist.items()))
    empty = final.empty_reason[(final.labels.lengths == 0) & (final.status != "incomplete")]
    if len(empty):
        reasons = {}
        for r in empty:
            reasons[r or "no reason given"] = reasons.get(r or "no reason given", 0) + 1
        print("images without a label, by reason: " + ", ".join(f"{k} {v:,}" for k, v in sorted(reasons.items())))
    if args.dawid_skene:
        written += write_dawid_skene(out, result, final)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


#: below this many (image, shown label) questions the EM estimates are mostly prior
MIN_DAWID_SKENE_QUESTIONS = 2000


def write_dawid_skene(out: Path, result, final) -> list[Path]:
    from multilabelfy.analysis import dawid_skene
    from multilabelfy.analysis.inputs import write_csv

    model = dawid_skene.fit(result.answers)
    people = dawid_skene.annotator_table(model)
    differ = dawid_skene.disagreements(model, result.answers, final)
    write_csv(people, out / "dawid_skene_annotators.csv")
    write_csv(differ, out / "dawid_skene_disagreements.csv")
    print(f"Dawid-Skene ({model.iterations} iterations over {len(model.label):,} questions): "
          f"{len(differ):,} (image, label) pairs differ from the final labels")
    weak = [name for name, se, sp in zip(model.annotators, model.sensitivity, model.specificity) if se + sp < 1.5]
    if weak or len(model.label) < MIN_DAWID_SKENE_QUESTIONS:
        print(f"warning: the Dawid-Skene fit looks unreliable ({len(model.label):,} questions; annotators barely "
              f"better than chance: {', '.join(weak) or 'none'}); with little data or 2 annotators per image "
              f"read its list as hints only")
    return [out / "dawid_skene_annotators.csv", out / "dawid_skene_disagreements.csv"]
