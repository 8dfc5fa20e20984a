"""`check-data` and `catalog`, plus the dataset options every build command shares."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from multilabelfy.collector.clitools import UserError, add_command

CATALOG_HELP = ("class catalog: 'imagenet-1k' (timm's ImageNetInfo: WordNet ids, lemmas, definitions) "
                "or a .csv/.json file with index,id,name,synonyms,definition")


def add_dataset_options(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """--data, --layout, --image-root, --catalog: how every command finds images and labels."""
    parser.add_argument("--data", metavar="DATA_DIR", required=required,
                        help="dataset: a folder in ImageNetV2 layout (class folders 0..N-1), "
                             "ImageFolder layout (folders named by class id, e.g. WordNet IDs), "
                             "or a CSV manifest with columns path,label")
    parser.add_argument("--layout", default="auto", choices=("auto", "imagenetv2", "imagefolder", "csv"),
                        help="dataset layout; 'auto' picks imagenetv2 when every class folder is a number")
    parser.add_argument("--image-root", metavar="DIR", default=None,
                        help="for a CSV manifest: the folder its paths start from (default: the CSV's folder)")
    parser.add_argument("--catalog", default="imagenet-1k", help=CATALOG_HELP)


def open_dataset_from_args(args: argparse.Namespace):
    """(dataset, catalog) from the shared options."""
    from multilabelfy.build.catalog import load_catalog
    from multilabelfy.build.datasets import open_dataset

    catalog = load_catalog(args.catalog)
    dataset = open_dataset(args.data, layout=args.layout, num_classes=len(catalog),
                           class_ids=catalog.ids, image_root=args.image_root)
    return dataset, catalog


def register(subparsers: argparse._SubParsersAction) -> None:
    check = add_command(subparsers, "check-data", run=run_check,
                        help="list a dataset's images and labels and decode every image",
                        description="Read a dataset the way `propose` will, decode every image, and report "
                                    "images per class and any unreadable file. Exit code 2 on the first bad "
                                    "image, unless --skip-bad.")
    add_dataset_options(check)
    check.add_argument("--skip-bad", action="store_true",
                       help="go on past unreadable images and list them at the end")
    check.add_argument("--no-decode", action="store_true", help="only list the files, do not decode them")

    cat = add_command(subparsers, "catalog", run=run_catalog,
                      help="write the class catalog (ids, names, synonyms, definitions) to a file",
                      description="Export a class catalog as CSV or JSON, e.g. to edit names for a new dataset.")
    cat.add_argument("--catalog", default="imagenet-1k", help=CATALOG_HELP)
    cat.add_argument("--out", type=Path, required=True, help="output file: .csv or .json")


def run_check(args: argparse.Namespace) -> int:
    from multilabelfy.build.datasets import check_images

    dataset, catalog = open_dataset_from_args(args)
    classes = len({s.label for s in dataset})
    print(f"{_count(len(dataset), 'image')} in {_count(classes, 'class')} ({dataset.layout} layout, "
          f"catalog {catalog.source})")
    if args.no_decode:
        return 0
    checked = check_images(dataset, skip_bad=args.skip_bad, progress=sys.stderr.isatty())
    print(f"{_count(len(checked), 'image')} {'decodes' if len(checked) == 1 else 'decode'}")
    if checked.skipped:
        print(f"skipped {len(checked.skipped)} unreadable image(s):")
        for key, reason in checked.skipped:
            print(f"  {key}: {reason}")
    return 0


def _count(n: int, noun: str) -> str:
    """`1 image`, `2 images`, `3 classes`."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}{'es' if noun.endswith('s') else 's'}"


def run_catalog(args: argparse.Namespace) -> int:
    from multilabelfy.build.catalog import load_catalog, save_catalog

    if args.out.suffix.lower() not in (".csv", ".json"):
        raise UserError(f"--out {str(args.out)!r}: use a .csv or .json file name")
    if not args.out.parent.exists():
        raise UserError(f"folder {str(args.out.parent)!r} does not exist")
    catalog = load_catalog(args.catalog)
    save_catalog(catalog, args.out)
    print(f"wrote {len(catalog)} classes to {args.out}")
    return 0
