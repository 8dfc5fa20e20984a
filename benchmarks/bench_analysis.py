"""Benchmark: disagreement + finalize at ImageNet-train scale, against plain Python loops.

    .venv/bin/python benchmarks/bench_analysis.py [--images 1280000] [--compare-images 160000]

Builds (once, kept in --workdir) a simulated project: ImageNetV2's released multi-labels
tiled to --images images, 20 labels shown per page, 2 annotators per batch (14
annotators, 100 batches), the disagreed images refined by 5 refiners. Then:

1. target: `multilabelfy-analyze disagreement` and `finalize` on the full project, each in
   its own process: wall time and peak memory (target: < 60 s together, < 4 GB each);
2. side by side on --compare-images: the vectorised analysis (inputs + statuses + final
   labels, written) against the obvious alternative (formats.read_store +
   latest_records + dict/set loops), each in its own process; both must write the same
   real_labels.json; ratios printed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "imagenetv2"
ANNOTATORS = [f"annotator{i:02d}" for i in range(1, 15)]
REFINERS = ["carol", "erin", "frank", "grace", "heidi"]


def generate(root: Path, images: int) -> None:
    """The simulated project under root (skipped when root/done.json says it is there)."""
    from multilabelfy.analysis import disagreement, inputs, refine, simulate
    from multilabelfy.build import access, site
    from multilabelfy.collector import formats

    done = root / "done.json"
    if done.exists() and json.loads(done.read_text()).get("images") == images:
        return
    t0 = time.perf_counter()
    truth = simulate.imagenetv2_truth(DATA, repeat=math.ceil(images / 10_000))
    truth = simulate.Truth(truth.keys[:images], truth.labels[:images], truth.truth[:images])
    shown = simulate.proposals(truth)
    manifest = simulate.write_site(root / "site", root / "private", truth, shown, batches=100, annotators=ANNOTATORS)
    del shown
    assigned = access.load_assignments(root / "private")["annotate"]
    store = root / "submissions.jsonl"
    truth_of = dict(zip(truth.keys, truth.truth))
    simulate.write_records(store, simulate.iter_annotations(manifest, assigned, truth_of, miss=0.1, extra=0.003,
                                                            skip=0.002, revise=0.01), mode="w")
    result = disagreement.analyse(inputs.load_inputs(root / "site", root / "private", store))
    plan = refine.plan(result, REFINERS)
    pages = {b: [formats.ManifestImage(key=s.key, page=f"refine/{b}/{i:07d}.html", shown=tuple(s.shown),
                                       prechecked=tuple(s.prechecked),
                                       shown_hash=formats.shown_digest("refine", s.key, s.shown))
                 for i, s in enumerate(specs, start=1)] for b, specs in plan.specs.items()}
    del result, plan
    refined = site.save_stage(root / "site", "refine", pages, num_classes=1000)
    access.save_assignments(root / "private", "refine", {b: [REFINERS[b - 1]] for b in pages})
    simulate.write_records(store, simulate.iter_annotations(refined, {b: [REFINERS[b - 1]] for b in pages}, truth_of,
                                                            miss=0.02, extra=0.001, stage="refine"))
    done.write_text(json.dumps({"images": images, "seconds": round(time.perf_counter() - t0, 1)}))


def measured(command: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak resident GB, stdout) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{out}")
    return wall, usage.ru_maxrss / 1024 ** 2, out


def vectorised(root: Path, out: Path) -> None:
    """The library path of `disagreement` + `finalize`: statuses and final labels, written."""
    from multilabelfy.analysis import disagreement, finalize, inputs

    result = disagreement.analyse(inputs.load_inputs(root / "site", root / "private", root / "submissions.jsonl"))
    out.mkdir(parents=True, exist_ok=True)
    finalize.write_final(out, finalize.finalize(result), allow_incomplete=True)


def plain(root: Path, out: Path) -> None:
    """The obvious alternative: a dict per record, a set per answer, loops over images."""
    import csv

    from multilabelfy.collector import formats

    records, _ = formats.read_store(root / "submissions.jsonl")
    latest = formats.latest_records(records)
    del records
    manifest = formats.load_manifest(root / "site")
    assignments = json.loads((root / "private" / "assignments.json").read_text())
    with (root / "private" / "images.csv").open() as fh:
        images = [(row["key"], int(row["label"])) for row in csv.DictReader(fh)]
    agreed: dict[str, list[int]] = {}
    for batch, pages in manifest.stages["annotate"].items():
        people = assignments["annotate"][str(batch)]
        for page in pages:
            answers = [latest.get(("annotate", page.key, who)) for who in people]
            if all(a is not None for a in answers):
                sets = [set(a["labels"]) for a in answers]
                if all(s == sets[0] for s in sets):
                    agreed[page.key] = sorted(sets[0])
    refined: dict[str, list[int]] = {}
    for batch, pages in manifest.stages.get("refine", {}).items():
        people = assignments["refine"][str(batch)]
        for page in pages:
            answers = [latest.get(("refine", page.key, who)) for who in people]
            if all(a is not None for a in answers):
                votes: dict[int, int] = {}
                for a in answers:
                    for label in set(a["labels"]):
                        votes[label] = votes.get(label, 0) + 1
                refined[page.key] = sorted(c for c, n in votes.items() if 2 * n >= len(answers))
    final = []
    for key, label in images:
        if key in refined:
            final.append(refined[key])
        elif key in agreed and label in agreed[key]:
            final.append(agreed[key])
        else:
            final.append([])
    out.mkdir(parents=True, exist_ok=True)
    (out / "real_labels.json").write_text(json.dumps(final, separators=(",", ":")) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1_280_000, help="images of the full-scale run")
    parser.add_argument("--compare-images", type=int, default=160_000, help="images of the side-by-side run")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/multilabelfy-bench-analysis"),
                        help="where the simulated projects are kept between runs")
    parser.add_argument("--run", choices=("vectorised", "plain", "generate"), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run == "generate":
        generate(args.root, args.n)
        return
    if args.run:
        (vectorised if args.run == "vectorised" else plain)(args.root, args.out)
        return

    python, cli = sys.executable, str(Path(sys.executable).with_name("multilabelfy-analyze"))
    full = args.workdir / f"full-{args.images}"
    small = args.workdir / f"compare-{args.compare_images}"
    for root, n in ((small, args.compare_images), (full, args.images)):
        t0 = time.perf_counter()  # in a child: this process stays small, so children's peak memory is theirs
        subprocess.run([python, __file__, "--run", "generate", "--root", str(root), "--n", str(n)], check=True)
        print(f"project of {n:,} images ready in {root} ({time.perf_counter() - t0:.0f} s)", flush=True)

    print(f"\nside by side, {args.compare_images:,} images (statuses + final labels, written):")
    results = {}
    for name in ("vectorised", "plain"):
        results[name] = measured([python, __file__, "--run", name, "--root", str(small), "--out", str(small / name)])
        print(f"  {name:<10} {results[name][0]:6.1f} s  {results[name][1]:5.2f} GB peak", flush=True)
    same = (small / "vectorised" / "real_labels.json").read_text() == (small / "plain" / "real_labels.json").read_text()
    print(f"  plain / vectorised: time x{results['plain'][0] / results['vectorised'][0]:.1f}, memory "
          f"x{results['plain'][1] / results['vectorised'][1]:.1f}; same real_labels.json: {same}")
    if not same:
        raise SystemExit("the two implementations disagree")

    print(f"\nfull scale, {args.images:,} images x 2 annotators + refinements, command line:")
    base = ["--site", str(full / "site"), "--private", str(full / "private"), "--store", str(full / "submissions.jsonl")]
    total = 0.0
    for command in (["disagreement", *base, "--out", str(full / "dis")],
                    ["finalize", *base, "--out", str(full / "labels"), "--allow-incomplete"]):
        wall, peak, out = measured([cli, *command])
        total += wall
        print(f"  {command[0]:<13} {wall:6.1f} s  {peak:5.2f} GB peak   | {out.splitlines()[0]}", flush=True)
    lines = sum(1 for _ in (full / "submissions.jsonl").open("rb"))
    print(f"  together      {total:6.1f} s (target < 60 s; {lines:,} stored records)")


if __name__ == "__main__":
    main()
