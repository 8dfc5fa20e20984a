"""`select-model`: rank candidate timm models by ReaL accuracy on a multi-labelled set."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from multilabelfy.build.data_commands import add_dataset_options, open_dataset_from_args
from multilabelfy.build.propose_command import add_inference_options
from multilabelfy.collector.clitools import UserError, add_command, name_list


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers, "select-model", run=run_select,
        help="rank candidate models by ReaL accuracy (top-1 within the image's label set)",
        description="Run each candidate over a multi-labelled dataset and rank them by ReaL accuracy: a top-1 "
                    "prediction counts as right when it lies in the image's set of valid labels; images with an "
                    "empty set are left out, as ReaL does. Plain top-1 against the original label is shown beside "
                    "it.\n\nTypical use: ImageNet-1k val (ImageFolder layout) with --labels imagenet-real, "
                    "timm's bundled copy of the ReaL labels.")
    add_dataset_options(parser)
    parser.add_argument("--labels", required=True, metavar="FILE",
                        help="label sets in ReaL form (a JSON list of label lists), or 'imagenet-real' for "
                             "timm's imagenet_real_labels.json")
    parser.add_argument("--labels-order", default="auto", choices=("auto", "dataset", "filename"),
                        help="how entries map to images: 'dataset' = i-th image in dataset order; 'filename' = "
                             "ILSVRC2012_val_{i+1:08d}.JPEG (timm's file); 'auto' = filename when every image is "
                             "named so, else dataset")
    parser.add_argument("--models", type=name_list, required=True, metavar="M1,M2,...",
                        help="candidate timm models (name with pretrained tag), comma-separated; "
                             "NAME=FILE loads that model's weights from a local checkpoint")
    add_inference_options(parser, checkpoint=False)
    parser.add_argument("--out", type=Path, default=None, help="save the ranking as .csv or .json")
    parser.add_argument("--save-dir", type=Path, default=None,
                        help="also save each model's top-K predictions there as a proposals table "
                             "(MODEL.parquet), for later evaluation")
    parser.add_argument("--top-k", type=int, default=5, help="predictions kept per image in --save-dir tables")


def _candidate(text: str, args: argparse.Namespace):
    from multilabelfy.build.proposals import ModelSpec

    name, _, checkpoint = text.partition("=")
    if checkpoint and args.random_weights:
        raise UserError(f"--models {text!r}: a checkpoint and --random-weights exclude each other")
    return ModelSpec(name.strip(), checkpoint=Path(checkpoint) if checkpoint else None,
                     random_weights=args.random_weights, seed=args.seed)


def run_select(args: argparse.Namespace) -> int:
    import numpy as np

    from multilabelfy.build import proposals as core
    from multilabelfy.build import select_model as sel
    from multilabelfy.build.proposals_table import write_proposals

    for path, what in ((args.out, "--out"), (args.save_dir, "--save-dir")):
        if path is not None and not (path if what == "--save-dir" else path.parent).is_dir():
            raise UserError(f"{what} {str(path)!r}: folder does not exist")
    if args.out is not None and args.out.suffix.lower() not in (".csv", ".json"):
        raise UserError(f"--out {str(args.out)!r}: use a .csv or .json file name")
    if args.workers is not None and args.workers < 0:
        raise UserError(f"--workers {args.workers}: give 0 or more")
    if args.top_k < 5:
        raise UserError(f"--top-k {args.top_k}: at least 5 are needed for top-5 accuracy")
    specs = [_candidate(text, args) for text in args.models]
    dataset, catalog = open_dataset_from_args(args)
    label_sets = sel.align_label_sets(sel.read_label_sets(args.labels), dataset.keys, args.labels_order,
                                      where=f"labels {args.labels!r}")
    bad = sorted({c for s in label_sets.values() for c in s if not 0 <= c < len(catalog)})
    if bad:
        raise UserError(f"labels {args.labels!r}: class index {bad[0]} is outside the catalog's {len(catalog)} classes")
    scores = []
    for spec in specs:
        loaded = core.load_model(spec, num_classes=len(catalog))
        options = core.RunOptions(top_k=args.top_k, batch_size=args.batch_size, workers=args.workers,
                                  device=args.device, amp=args.amp, jpeg_draft=args.jpeg_draft,
                                  skip_bad=args.skip_bad, progress=sys.stderr.isatty())
        predictor = core.Predictor(loaded, options)
        rows, skipped = sel.predict_dataset(predictor, dataset)
        for key, reason in skipped:
            print(f"skipped {key}: {reason}", file=sys.stderr)
        predictions = np.asarray(rows["classes"], dtype=np.int64).reshape(len(rows["key"]), args.top_k)
        scores.append(sel.score(spec.name, spec.weights, predictions, rows["label"],
                                [label_sets[k] for k in rows["key"]]))
        if args.save_dir is not None:
            record = core.run_record(loaded, dataset, options, core.amp_name(predictor.amp), catalog.source)
            metadata = {**record["metadata"], "skipped": [{"key": k, "reason": r} for k, r in skipped]}
            write_proposals(args.save_dir / f"{spec.name}.parquet", rows, metadata)
        del predictor, loaded
    ranked = sel.ranking(scores)
    print(sel.format_ranking(ranked))
    if args.out is not None:
        sel.save_ranking(ranked, args.out)
        print(f"wrote {args.out}")
    return 0
