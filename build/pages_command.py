"""`multilabelfy-build pages`: the static annotation site (stage 2) and its private folder."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from multilabelfy.build.data_commands import add_dataset_options
from multilabelfy.collector.clitools import (UserError, add_command, existing_path, name_list, non_negative_int,
                                            positive_int)

DESCRIPTION = """\
Render one annotation page per image (the proposals in groups, exemplars, "none of these"
with a reason, a comment box), batch pages and the site index into --out, and write the
secret links (links.csv), the collector's token hashes and everything analysis needs into
--private. Nothing secret goes to --out; publish --out on any static host.

Re-running with nothing changed rewrites nothing; existing links keep working."""


def _url(value: str) -> str:
    if value and not value.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"{value!r} must start with http:// or https:// (or be empty)")
    return value.rstrip("/")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "pages", run=run_pages, description=DESCRIPTION,
                    help="render the static annotation site and the annotators' secret links")
    p.add_argument("--proposals", type=existing_path("proposals file"), required=True,
                   help="proposals table written by `multilabelfy-build propose` (Parquet)")
    add_dataset_options(p)
    p.add_argument("--exemplars", metavar="EXEMPLAR_DIR", type=existing_path("exemplar folder"), default=None,
                   help="ImageNet-style folder with class folders named by class index or class id "
                        "(e.g. ImageNet train); exemplars are chosen from it, never an annotated image "
                        "(default: no exemplars)")
    p.add_argument("--annotators", type=name_list, required=True, help="comma-separated annotator names, e.g. alice,bob")
    p.add_argument("--batches", type=positive_int, default=1, help="number of batches the images are split into")
    p.add_argument("--per-batch", type=positive_int, default=2, help="annotators per batch")
    p.add_argument("--collector-url", type=_url, required=True,
                   help="where the pages send answers, e.g. https://collector.example.org; '' for the site's "
                        "own origin (multilabelfy-collect --serve-site)")
    p.add_argument("--out", type=Path, default=Path("site"), help="site folder (public)")
    p.add_argument("--private", type=Path, required=True,
                   help="private folder for links, token hashes, assignments, build settings (never publish it)")
    p.add_argument("--site-url", type=_url, default="",
                   help="public address of the site, e.g. https://lab.github.io/labels; links.csv then holds "
                        "full URLs (default: paths relative to the site)")
    p.add_argument("--order", choices=("shuffled", "dataset"), default="shuffled",
                   help="split and order images shuffled (seeded; batches mix classes) or in dataset order")
    p.add_argument("--seed", type=int, default=0, help="seed for the batch split and the exemplar choice")
    p.add_argument("--group-size", type=positive_int, default=5, help="proposals per group (tab)")
    p.add_argument("--exemplars-per-class", type=non_negative_int, default=10, help="exemplar images per class")
    p.add_argument("--thumb-size", type=positive_int, default=160, help="longest side of exemplar thumbnails, px")
    p.add_argument("--exemplar-max-side", type=positive_int, default=800,
                   help="longest side of the exemplars' full-size view, px")
    p.add_argument("--image-max-side", type=non_negative_int, default=0,
                   help="cap the annotated images' longest side, px (0: copy originals; use it to fit GitHub Pages)")
    p.add_argument("--image-base-url", type=_url, default="",
                   help="load annotated images from <URL>/<key> instead of copying them into the site")
    p.add_argument("--workers", type=non_negative_int, default=0, help="image worker processes (0: one per core)")


def build_specs(proposals_path: Path, dataset, catalog):
    """PageSpecs in dataset order from the proposals table, checked against the dataset."""
    from multilabelfy.build.proposals_table import read_proposals, shown_classes
    from multilabelfy.build.site import PageSpec

    frame, metadata = read_proposals(proposals_path)
    num = metadata.get("num_classes")
    if num is not None and int(num) != len(catalog):
        raise UserError(f"proposals file {str(proposals_path)!r} was made for {num} classes; the catalog has "
                        f"{len(catalog)} (check --catalog)")
    labels = dataset.labels()
    added = frame["label_added"] if "label_added" in frame.columns else [False] * len(frame)
    specs = {}
    for key, label, classes, extra in zip(frame["key"], frame["label"], frame["classes"], added):
        if key not in labels:
            raise UserError(f"proposals file {str(proposals_path)!r}: image {key!r} is not in the dataset "
                            f"{str(dataset.root)!r} (wrong --data?)")
        if int(label) != labels[key]:
            raise UserError(f"proposals file {str(proposals_path)!r}: image {key!r} has label {int(label)}, "
                            f"the dataset says {labels[key]}")
        specs[key] = PageSpec(key=key, shown=shown_classes(key, classes, int(label), bool(extra)))
    missing = [k for k in dataset.keys if k not in specs]
    if missing:
        raise UserError(f"proposals file {str(proposals_path)!r} lacks {len(missing)} image(s) of the dataset, "
                        f"e.g. {missing[0]!r}: run `propose` again")
    return [specs[k] for k in dataset.keys], metadata


RANDOM_WEIGHTS_BANNER = ("Demo only: these proposals come from {model} with RANDOM weights, so they are "
                         "not meaningful. Rebuild with pretrained weights before real annotation.")


def run_pages(args: argparse.Namespace) -> int:
    from multilabelfy.build import access, site
    from multilabelfy.build.data_commands import open_dataset_from_args

    private = access.prepare_private_dir(args.private, args.out)
    if args.exemplars is not None and not args.exemplars.is_dir():
        raise UserError(f"--exemplars {str(args.exemplars)!r} is not a folder")
    dataset, catalog = open_dataset_from_args(args)
    specs, metadata = build_specs(args.proposals, dataset, catalog)
    banner = ""
    if metadata.get("weights") == "random":
        banner = RANDOM_WEIGHTS_BANNER.format(model=metadata.get("model", "the model"))
        print(f"WARNING: {args.proposals} was made with RANDOM weights: fine for a test, not for annotation.",
              file=sys.stderr)
    by_key = {s.key: s for s in specs}
    split = access.split_batches([s.key for s in specs], args.batches, seed=args.seed,
                                 shuffle=args.order == "shuffled")
    assignment = access.assign_annotators(args.annotators, args.batches, args.per_batch)
    options = site.SiteOptions(group_size=args.group_size, exemplars_per_class=args.exemplars_per_class,
                               thumb_size=args.thumb_size, exemplar_max_side=args.exemplar_max_side,
                               image_max_side=args.image_max_side, image_base_url=args.image_base_url,
                               seed=args.seed, workers=args.workers, banner=banner)
    progress = sys.stderr.isatty()
    pages = site.render_stage(args.out, "annotate", {b: [by_key[k] for k in keys] for b, keys in split.items()},
                              catalog=catalog, dataset=dataset, exemplar_dir=args.exemplars,
                              collector_url=args.collector_url, options=options, progress=progress)

    access.save_assignments(private, "annotate", assignment)
    access.save_images_csv(private, ((s.key, s.label) for s in dataset))
    access.save_build_settings(private, {
        "proposals": str(Path(args.proposals).resolve()), "model": metadata.get("model"),
        "data": str(Path(args.data).resolve()), "layout": dataset.layout,
        "image_root": str(Path(args.image_root).resolve()) if args.image_root else None,
        "catalog": args.catalog if args.catalog == "imagenet-1k" else str(Path(args.catalog).resolve()),
        "exemplars": str(Path(args.exemplars).resolve()) if args.exemplars else None,
        "site": str(Path(args.out).resolve()), "collector_url": args.collector_url, "site_url": args.site_url,
        "annotators": list(args.annotators), "batches": args.batches, "per_batch": args.per_batch,
        "order": args.order, "options": options.to_json()})
    links = access.issue_links(private, [(name, "annotate", b) for b, names in assignment.items() for name in names],
                               site_url=args.site_url)
    access.ensure_admin_token(private)

    print(f"{sum(len(v) for v in pages.values()):,} pages in {len(pages)} batch(es) under {args.out}")
    for b, names in assignment.items():
        print(f"  batch {b}: {len(pages[b]):,} images, {', '.join(names)}")
    print(f"{len(links)} secret links in {private / 'links.csv'} (send each annotator their own; never publish)")
    print("site size:")
    for line in site.size_report(args.out).lines():
        print(line)
    return 0
