"""`propose`, `merge` and `coverage`: stage 1 on the command line, on one machine or many.

The same `propose` command runs alone, under `torchrun` (each process takes every
world-size-th chunk; rank 0 merges) or as one job of an array with `--shard i/n`, followed
by `merge`. Every finished chunk is kept in `OUT.parts/`, so a rerun resumes.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from multilabelfy.build.data_commands import add_dataset_options, open_dataset_from_args
from multilabelfy.collector.clitools import UserError, add_command, positive_int


def shard_spec(value: str) -> tuple[int, int]:
    """`i/n` with 0 <= i < n, e.g. `$SLURM_ARRAY_TASK_ID/8` for `--array=0-7`."""
    try:
        index, count = (int(part) for part in value.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not of the form i/n (e.g. 0/4)") from None
    if count < 1 or not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"{value!r}: i must lie between 0 and n-1")
    return index, count


def add_inference_options(parser: argparse.ArgumentParser, checkpoint: bool = True) -> None:
    """How to run a model over images: shared by `propose` and `select-model`."""
    if checkpoint:
        parser.add_argument("--checkpoint", type=Path, metavar="FILE",
                            help="load the weights from this file (.pth, .pt, .bin or .safetensors) "
                                 "instead of the hub")
    parser.add_argument("--random-weights", action="store_true",
                        help="no pretrained weights: seeded random ones, for smoke tests only (loudly warned about)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (recorded in the output)")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="images per forward pass")
    parser.add_argument("--workers", type=int, default=None,
                        help="image-decoding worker processes (default: one per core of each process, at most 8; "
                             "0 decodes in the main process)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="where the model runs; 'auto' takes a CUDA GPU when there is one "
                             "(under torchrun: the GPU of the process's local rank)")
    parser.add_argument("--amp", default="auto", choices=("auto", "bf16", "fp16", "off"),
                        help="mixed precision on a GPU ('auto': bf16 where supported); the CPU always runs float32")
    parser.add_argument("--jpeg-draft", action="store_true",
                        help="decode large JPEGs at a reduced DCT scale, never below the size the model's "
                             "transform resizes to (faster decoding; recorded in the metadata)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="go on past unreadable images, list them at the end and in the table's metadata")


def register(subparsers: argparse._SubParsersAction) -> None:
    propose = add_command(
        subparsers, "propose", run=run_propose,
        help="rank every class for every image with a timm model; keep the top K as proposals",
        description="Run a timm model over a dataset and write one Parquet row per image: its key, original "
                    "label, the top-K classes with their softmax probabilities, and where the original label "
                    "ranks (added to the page when it falls outside the top K). A coverage report is printed "
                    "and saved beside the table.\n\n"
                    "Resumable: finished chunks are kept in OUT.parts/ until the table is written, so an "
                    "interrupted run continues where it stopped. Under `torchrun --nproc_per_node=N` the chunks "
                    "are split across the N processes (GPUs, nodes); with --shard i/n across independent jobs, "
                    "followed by `merge`.")
    add_dataset_options(propose)
    propose.add_argument("--model", required=True,
                         help="timm model name, optionally with its pretrained tag, e.g. "
                              "eva02_large_patch14_448.mim_m38m_ft_in22k_in1k")
    add_inference_options(propose)
    propose.add_argument("--top-k", type=positive_int, default=20, help="proposals kept per image")
    propose.add_argument("--out", type=Path, required=True, help="output table (.parquet)")
    propose.add_argument("--overwrite", action="store_true", help="replace an existing output table")
    propose.add_argument("--chunk-size", type=positive_int, default=1024,
                         help="images per saved chunk: the unit of resumption and of work sharing")
    propose.add_argument("--shard", type=shard_spec, default=None, metavar="I/N",
                         help="compute only shard I of N (I = 0..N-1), e.g. one job of a SLURM array; "
                              "run `merge` once all shards are done")
    propose.add_argument("--max-chunks", type=positive_int, default=None, metavar="N",
                         help="stop after N chunks (per process), e.g. to fit a job's time limit; rerun to go on")
    propose.add_argument("--keep-parts", action="store_true", help="keep OUT.parts/ after writing the table")

    merge = add_command(subparsers, "merge", run=run_merge,
                        help="join the chunks of a sharded `propose` run into the final table",
                        description="After every `propose --shard i/n` job has finished, write the table OUT "
                                    "from OUT.parts/ (exactly as a single run would) and its coverage report.")
    merge.add_argument("--out", type=Path, required=True, help="the --out of the propose jobs (.parquet)")
    merge.add_argument("--keep-parts", action="store_true", help="keep OUT.parts/ after writing the table")

    cover = add_command(subparsers, "coverage", run=run_coverage,
                        help="how often the original label is among the top-K proposals of a table",
                        description="Recompute and save the coverage report of a proposals table: the share of "
                                    "images whose original label is within the top 1/5/10/20, its rank "
                                    "distribution, and the smallest K covering 95%%, 99%% and 99.9%% of images.")
    cover.add_argument("--proposals", type=Path, required=True, help="proposals table (.parquet)")


def _check_out(out: Path, overwrite: bool) -> None:
    if out.suffix.lower() != ".parquet":
        raise UserError(f"--out {str(out)!r}: use a .parquet file name")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)  # like every other output folder of the tool
    except OSError as exc:
        raise UserError(f"--out {str(out)!r}: cannot create folder {str(out.parent)!r}: {exc.strerror}") from None
    if out.exists() and not overwrite:
        raise UserError(f"--out {str(out)!r} already exists; pass --overwrite to replace it")


class _Dist:
    """torch.distributed when launched by torchrun (gloo: only a barrier and a sum travel)."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(self.world)))
        if self.world > 1:
            from datetime import timedelta

            import torch.distributed as dist
            if not dist.is_initialized():
                dist.init_process_group(backend="gloo", timeout=timedelta(hours=24))

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist
            dist.barrier()

    def reduce(self, *values: float, op: str = "sum") -> list[float]:
        """The sum (or max) of each value over all processes."""
        if self.world == 1:
            return list(values)
        import torch
        import torch.distributed as dist
        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
        return tensor.tolist()

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist
            dist.destroy_process_group()


def run_propose(args: argparse.Namespace) -> int:
    from multilabelfy.build import proposals as core

    out: Path = args.out
    dist = _Dist()
    try:
        lead = dist.rank == 0
        parts = core.Parts(out)
        _check_out(out, args.overwrite or parts.dir.is_dir())
        if args.workers is not None and args.workers < 0:
            raise UserError(f"--workers {args.workers}: give 0 or more")
        dataset, catalog = open_dataset_from_args(args)
        spec = core.ModelSpec(args.model, checkpoint=args.checkpoint, random_weights=args.random_weights,
                              seed=args.seed)
        loaded = core.load_model(spec, num_classes=len(catalog), announce=lead)
        options = core.RunOptions(top_k=args.top_k, batch_size=args.batch_size, chunk_size=args.chunk_size,
                                  workers=args.workers, device=args.device, amp=args.amp,
                                  jpeg_draft=args.jpeg_draft, skip_bad=args.skip_bad,
                                  progress=lead and sys.stderr.isatty())
        predictor = core.Predictor(loaded, options, local_rank=dist.local_rank, local_world=dist.local_world)
        run = core.run_record(loaded, dataset, options, core.amp_name(predictor.amp), catalog.source)
        parts.check(run)
        if lead:
            parts.start(run)
            print(f"proposing top-{options.top_k} of {loaded.num_classes} classes for {len(dataset)} images "
                  f"with {spec.name} ({spec.weights}) on {predictor.device}"
                  f"{f' x {dist.world} processes' if dist.world > 1 else ''}", file=sys.stderr)
        dist.barrier()
        shard = args.shard or (0, 1)
        share = core.Share(index=shard[0], count=shard[1], rank=dist.rank, world=dist.world)
        outcome = core.compute(predictor, dataset, parts, share, max_chunks=args.max_chunks)
        images, skipped, reused = dist.reduce(outcome.stats.images, outcome.stats.skipped, outcome.reused)
        (seconds,) = dist.reduce(outcome.stats.seconds, op="max")  # the processes ran side by side
        dist.barrier()
        if not lead:
            return 0
        rate = images / seconds if seconds > 0 else 0.0
        print(f"computed {int(images)} images in {seconds:.1f} s ({rate:.1f} img/s)"
              f"{f'; {int(reused)} taken from an earlier run' if reused else ''}"
              f"{f'; skipped {int(skipped)} unreadable' if skipped else ''}")
        if args.shard is not None:
            print(f"shard {shard[0]}/{shard[1]} done; once every shard is, run: "
                  f"multilabelfy-build merge --out {out}")
        elif not core.all_done(parts, len(dataset), options.chunk_size):
            print(f"stopped early (--max-chunks); rerun the same command to go on ({parts.dir} keeps the work)")
        else:
            _finish(parts, keep=args.keep_parts)
        if spec.random_weights:
            print(f"WARNING: {out} was made with RANDOM weights (seed {spec.seed}): not for annotation.",
                  file=sys.stderr)
        return 0
    finally:
        dist.close()


def _finish(parts, keep: bool) -> None:
    """Write the table from the chunks, then print and save its coverage report."""
    table, metadata = parts.merge(keep=keep)
    print(f"wrote {table.num_rows} rows to {parts.out}")
    if metadata.get("skipped"):
        print(f"skipped {len(metadata['skipped'])} unreadable image(s) (listed in the table's metadata):")
        for item in metadata["skipped"]:
            print(f"  {item['key']}: {item['reason']}")
    _report(table.column("label_rank").to_numpy(), metadata.get("top_k"), parts.out)


def _report(ranks, top_k: int | None, table: Path) -> None:
    from multilabelfy.build import coverage

    report = coverage.coverage_report(ranks, top_k=top_k)
    print(coverage.format_report(report))
    json_path, csv_path = coverage.save_report(report, table)
    print(f"coverage report: {json_path}, {csv_path}")


def run_merge(args: argparse.Namespace) -> int:
    from multilabelfy.build import proposals as core

    if args.out.suffix.lower() != ".parquet":
        raise UserError(f"--out {str(args.out)!r}: use a .parquet file name")
    _finish(core.Parts(args.out), keep=args.keep_parts)
    return 0


def run_coverage(args: argparse.Namespace) -> int:
    from multilabelfy.build.proposals_table import read_proposals

    frame, metadata = read_proposals(args.proposals)
    if "label_rank" not in frame.columns:
        raise UserError(f"proposals file {str(args.proposals)!r} has no label_rank column")
    _report(frame["label_rank"].tolist(), metadata.get("top_k"), args.proposals)
    return 0
