"""Stage 1's inference core: rank every class for every image with a timm model.

Work is cut into fixed *chunks* of consecutive images (dataset order). A chunk is the
unit of resumption (each finished chunk is saved in a sidecar folder next to the output,
`OUT.parts/`) and of scale-out (chunk n goes to process n mod world size, under torchrun
or `--shard i/n`). Batches never straddle chunks, so every image is computed in the same
batch whatever the number of processes or interruptions: the merged table is the same.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from multilabelfy.build import proposals_table
from multilabelfy.build.datasets import BadImageError, Dataset, load_image
from multilabelfy.collector.clitools import UserError
from multilabelfy.collector.formats import atomic_write_text

DEFAULT_TOP_K = 20
DEFAULT_BATCH = 64
DEFAULT_CHUNK = 1024
PARTS_SUFFIX = ".parts"
RUN_FILE = "run.json"
AMP_MODES = ("auto", "bf16", "fp16", "off")

RANDOM_WEIGHTS_BANNER = """\
################################################################################
#  WARNING: --random-weights: model {model} has RANDOM weights (seed {seed}).
#  Its proposals are noise, fit only for smoke tests. Never show them to annotators.
################################################################################"""


# --- the model ------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelSpec:
    """Which network and which weights: the hub, a local checkpoint, or seeded random ones."""
    name: str
    checkpoint: Path | None = None
    random_weights: bool = False
    seed: int = 0

    @property
    def weights(self) -> str:
        """The metadata's `weights` field: `hub`, `checkpoint:<path>` or `random`."""
        if self.random_weights:
            return "random"
        if self.checkpoint is not None:
            return f"checkpoint:{self.checkpoint}"
        return "hub"


@dataclass
class LoadedModel:
    spec: ModelSpec
    model: torch.nn.Module
    data_config: dict[str, Any]   # timm's resolved data config (input size, crop, mean/std, ...)
    num_classes: int
    checkpoint_sha256: str | None = None

    def preprocessing(self, jpeg_draft: bool = False) -> dict[str, Any]:
        """The preprocessing as stored in the table's metadata (JSON-safe)."""
        cfg = self.data_config
        return {"input_size": list(cfg["input_size"]), "crop_pct": cfg.get("crop_pct"),
                "crop_mode": cfg.get("crop_mode", "center"), "interpolation": cfg.get("interpolation"),
                "mean": list(cfg["mean"]), "std": list(cfg["std"]), "jpeg_draft": bool(jpeg_draft)}


def load_model(spec: ModelSpec, num_classes: int | None = None, announce: bool = True) -> LoadedModel:
    """Build the timm model with its weights, in eval mode, on the CPU.

    Random weights are drawn after `torch.manual_seed(seed)`, so every process (and every
    rerun) gets the same network; they are announced loudly because their proposals are noise.
    """
    import timm

    if spec.random_weights and spec.checkpoint is not None:
        raise UserError("--random-weights and --checkpoint exclude each other: choose one source of weights")
    if not timm.is_model(spec.name):
        raise UserError(f"--model {spec.name!r} is not a timm model name (see timm.list_models(); "
                        f"a pretrained tag goes after a dot, e.g. 'eva02_large_patch14_448.mim_m38m_ft_in22k_in1k')")
    if spec.checkpoint is not None and not Path(spec.checkpoint).is_file():
        raise UserError(f"--checkpoint {str(spec.checkpoint)!r} does not exist")
    if spec.random_weights and announce:
        print(RANDOM_WEIGHTS_BANNER.format(model=spec.name, seed=spec.seed), file=sys.stderr, flush=True)
    torch.manual_seed(spec.seed)
    # Local or random weights take the catalog's class count, so a non-ImageNet dataset works;
    # hub weights keep their own head (a mismatch is an error below, never a random new head).
    head = {} if spec.weights == "hub" or num_classes is None else {"num_classes": num_classes}
    try:
        model = timm.create_model(spec.name, pretrained=spec.weights == "hub", **head)
    except RuntimeError as exc:  # timm: unknown pretrained tag
        raise UserError(f"--model {spec.name!r}: {exc}") from None
    except Exception as exc:  # the hub: network, cache, authentication (many types)
        raise UserError(f"the pretrained weights of {spec.name!r} could not be fetched from the Hugging Face hub "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                        f"use --checkpoint FILE for local weights") from None
    digest = None
    if spec.checkpoint is not None:
        from timm.models import load_checkpoint
        try:
            load_checkpoint(model, str(spec.checkpoint), strict=True)
        except Exception as exc:  # torch/safetensors raise many types for foreign or damaged files
            raise UserError(f"--checkpoint {str(spec.checkpoint)!r} does not fit model {spec.name!r} with "
                            f"{num_classes or 'its'} classes: {_first_lines(exc)}") from None
        digest = file_sha256(Path(spec.checkpoint))
    model.eval()
    classes = int(getattr(model, "num_classes", 0) or 0)
    if num_classes is not None and classes != num_classes:
        raise UserError(f"model {spec.name!r} predicts {classes} classes but the catalog has {num_classes}: "
                        f"choose weights fine-tuned on the catalog's classes (e.g. an *_in1k tag) or another --catalog")
    config = timm.data.resolve_model_data_config(model)
    return LoadedModel(spec=spec, model=model, data_config=dict(config), num_classes=classes,
                       checkpoint_sha256=digest)


def _first_lines(exc: BaseException, limit: int = 300) -> str:
    """An exception in one line: torch's state-dict errors put the cause on their second line."""
    text = " ".join(line.strip() for line in str(exc).splitlines()[:3] if line.strip())
    return f"{type(exc).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def file_sha256(path: Path) -> str:
    """The checkpoint's fingerprint, stored so a table names the exact weights it came from."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- images ---------------------------------------------------------------------------

def draft_size(data_config: dict[str, Any]) -> int:
    """The shorter side timm's eval transform resizes to before cropping (never decode below it)."""
    size = max(data_config["input_size"][1:])
    return int(math.floor(size / (data_config.get("crop_pct") or 1.0)))


class ImageFiles(torch.utils.data.Dataset):
    """Decoded, transformed images by dataset index; a bad file yields its reason, not an exception.

    (DataLoader workers cannot re-raise our exception type, so errors travel as data.)
    """

    def __init__(self, dataset: Dataset, transform: Callable, draft: int | None = None):
        self.dataset, self.transform, self.draft = dataset, transform, draft

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        sample = self.dataset.samples[index]
        try:
            image = load_image(self.dataset.path(sample.key), sample.key, draft_size=self.draft)
        except BadImageError as exc:
            return None, index, str(exc), exc.reason
        return self.transform(image), index, "", ""


def collate(items: list) -> tuple[torch.Tensor | None, list[int], list[tuple[int, str, str]]]:
    """(batch tensor of the good images, their indices, [(index, message, reason)] of bad ones)."""
    good = [(t, i) for t, i, msg, _ in items if not msg]
    bad = [(i, msg, reason) for _, i, msg, reason in items if msg]
    tensor = torch.stack([t for t, _ in good]) if good else None
    return tensor, [i for _, i in good], bad


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # a decoding worker needs one core; the rest go to the model


# --- options and chunks ---------------------------------------------------------------

@dataclass
class RunOptions:
    top_k: int = DEFAULT_TOP_K
    batch_size: int = DEFAULT_BATCH
    chunk_size: int = DEFAULT_CHUNK
    workers: int | None = None     # None: one per core (per process), at most 8
    device: str = "auto"
    amp: str = "auto"
    jpeg_draft: bool = False
    skip_bad: bool = False
    progress: bool = True


@dataclass(frozen=True)
class Chunk:
    number: int
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


def make_chunks(num_images: int, chunk_size: int) -> list[Chunk]:
    return [Chunk(n, start, min(start + chunk_size, num_images))
            for n, start in enumerate(range(0, num_images, chunk_size))]


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name not in ("auto", "cpu", "cuda"):
        raise UserError(f"--device {name!r}: choose auto, cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is available to torch on this machine")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on GPUs that have it (fp16 otherwise); full precision on the CPU."""
    if mode not in AMP_MODES:
        raise UserError(f"--amp {mode!r}: choose one of {', '.join(AMP_MODES)}")
    if device.type != "cuda" or mode == "off":
        return None
    if mode == "fp16" or (mode == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def amp_name(dtype: torch.dtype | None) -> str:
    return {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


# --- inference ------------------------------------------------------------------------

@dataclass
class ChunkResult:
    chunk: Chunk
    rows: dict[str, list]
    skipped: list[tuple[str, str]]


@dataclass
class Stats:
    images: int = 0
    skipped: int = 0
    seconds: float = 0.0


def empty_rows() -> dict[str, list]:
    return {name: [] for name in proposals_table.COLUMNS}


def rank_rows(probs: torch.Tensor, labels: torch.Tensor, top_k: int) -> dict[str, list]:
    """Proposal rows from softmax probabilities (N, C) and original labels (N,).

    `label_rank` is the label's 1-based position: its place in the top K when there, else
    1 + the number of classes with a higher probability (at least K + 1), so the two agree.
    """
    top_p, top_c = probs.topk(top_k, dim=1)
    label_p = probs.gather(1, labels[:, None]).squeeze(1)
    higher = (probs > label_p[:, None]).sum(1) + 1
    rows = empty_rows()
    for classes, p, label, lp, rank in zip(top_c.tolist(), top_p.tolist(), labels.tolist(),
                                           label_p.tolist(), higher.tolist()):
        inside = label in classes
        rows["classes"].append(classes)
        rows["probs"].append(p)
        rows["label"].append(label)
        rows["label_prob"].append(lp)
        rows["label_rank"].append(classes.index(label) + 1 if inside else max(int(rank), top_k + 1))
        rows["label_added"].append(not inside)
    return rows


class Predictor:
    """Runs one loaded model over chunks of a dataset: workers decode, the model ranks."""

    def __init__(self, loaded: LoadedModel, options: RunOptions, local_rank: int = 0, local_world: int = 1):
        import timm

        self.loaded, self.options = loaded, options
        if not 1 <= options.top_k <= loaded.num_classes:
            raise UserError(f"--top-k {options.top_k} must lie between 1 and the model's {loaded.num_classes} classes")
        self.device = resolve_device(options.device, local_rank)
        self.amp = resolve_amp(options.amp, self.device)
        self.transform = timm.data.create_transform(**loaded.data_config, is_training=False)
        self.draft = draft_size(loaded.data_config) if options.jpeg_draft else None
        cores = os.cpu_count() or 1
        self.workers = (min(8, max(1, cores // max(1, local_world))) if options.workers is None
                        else options.workers)
        self.model = loaded.model.to(self.device)
        if self.device.type == "cuda":  # (cudnn.benchmark stays off: its choice of kernels varies by run)
            torch.cuda.set_device(self.device)  # pinned memory and autocast then use this process's GPU
            self.model = self.model.to(memory_format=torch.channels_last)

    def _autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp)

    def run(self, dataset: Dataset, chunks: Sequence[Chunk],
            desc: str = "propose") -> Iterator[ChunkResult]:
        """Yield each chunk's rows as soon as its last batch is done, in chunk order."""
        from tqdm.auto import tqdm

        opts = self.options
        batches = [list(range(start, min(start + opts.batch_size, c.stop)))
                   for c in chunks for start in range(c.start, c.stop, opts.batch_size)]
        if not batches:
            return
        loader = torch.utils.data.DataLoader(
            ImageFiles(dataset, self.transform, self.draft), batch_sampler=batches, collate_fn=collate,
            num_workers=self.workers, pin_memory=self.device.type == "cuda",
            worker_init_fn=_worker_init if self.workers else None,
            prefetch_factor=4 if self.workers else None, persistent_workers=False)
        bar = tqdm(total=sum(len(c) for c in chunks), desc=desc, unit="img", disable=not opts.progress,
                   dynamic_ncols=True, file=sys.stderr)
        chunk_iter = iter(chunks)
        current = next(chunk_iter)
        rows, skipped = empty_rows(), []
        try:
            for tensor, indices, bad in loader:
                for index, message, reason in bad:
                    if not opts.skip_bad:
                        raise UserError(f"{message} (use --skip-bad to set bad images aside and go on)")
                    skipped.append((dataset.samples[index].key, reason))
                if tensor is not None:
                    self._extend(rows, dataset, tensor, indices)
                bar.update(len(indices) + len(bad))
                last = max(indices + [i for i, _, _ in bad])
                if last == current.stop - 1:
                    yield ChunkResult(current, rows, skipped)
                    rows, skipped = empty_rows(), []
                    current = next(chunk_iter, current)
        finally:
            bar.close()

    def _extend(self, rows: dict[str, list], dataset: Dataset, tensor: torch.Tensor, indices: list[int]) -> None:
        x = tensor.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        labels = torch.tensor([dataset.samples[i].label for i in indices], device=self.device)
        with torch.inference_mode(), self._autocast():
            logits = self.model(x)
        with torch.inference_mode():
            batch_rows = rank_rows(logits.float().softmax(dim=1), labels, self.options.top_k)
        batch_rows["key"] = [dataset.samples[i].key for i in indices]
        for name in proposals_table.COLUMNS:
            rows[name].extend(batch_rows[name])


# --- the sidecar folder: finished chunks, for resumption and merging --------------------

def parts_dir(out: Path) -> Path:
    return Path(out).with_name(Path(out).name + PARTS_SUFFIX)


def keys_digest(dataset: Dataset) -> str:
    """The dataset's identity for resumption: its keys and labels in order."""
    h = hashlib.sha256()
    for s in dataset.samples:
        h.update(f"{s.key}\t{s.label}\n".encode())
    return h.hexdigest()


#: Settings that change the numbers: a resumed run must match them all.
FINGERPRINT_FIELDS = ("model", "weights", "checkpoint_sha256", "seed", "top_k", "num_classes",
                      "preprocessing", "amp", "chunk_size", "num_images", "images_sha256")


class Parts:
    """`OUT.parts/`: `run.json` (settings + metadata) and one `chunk-NNNNNN.parquet` per finished chunk."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.dir = parts_dir(self.out)

    def chunk_path(self, number: int) -> Path:
        return self.dir / f"chunk-{number:06d}.parquet"

    def read_run(self) -> dict[str, Any] | None:
        path = self.dir / RUN_FILE
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise UserError(f"{str(path)!r} is damaged; delete the folder {str(self.dir)!r} to start over") from None

    def check(self, run: dict[str, Any]) -> None:
        """Refuse to mix chunks computed with other settings (other model, weights, data)."""
        old = self.read_run()
        if old is None:
            return
        differ = [f for f in FINGERPRINT_FIELDS if old.get(f) != run.get(f)]
        if differ:
            raise UserError(f"{str(self.dir)!r} holds an unfinished run with other settings "
                            f"({', '.join(differ)} differ); rerun with the same options, or delete that "
                            f"folder to start over, or choose another --out")

    def start(self, run: dict[str, Any]) -> None:
        self.check(run)
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.read_run() is None:
            atomic_write_text(self.dir / RUN_FILE, json.dumps(run, indent=1, sort_keys=True) + "\n")

    def done(self) -> set[int]:
        """Numbers of the finished chunks (their files are written atomically)."""
        if not self.dir.is_dir():
            return set()
        return {int(p.stem.split("-")[1]) for p in self.dir.glob("chunk-*.parquet")
                if p.stem.split("-")[1].isdigit()}

    def save(self, result: ChunkResult) -> None:
        meta = {"chunk": result.chunk.number, "start": result.chunk.start, "stop": result.chunk.stop,
                "skipped": [{"key": k, "reason": r} for k, r in result.skipped]}
        proposals_table.write_proposals(self.chunk_path(result.chunk.number), result.rows, meta)

    def merge(self, keep: bool = False) -> tuple[Any, dict[str, Any]]:
        """Write the final table from all chunks, atomically; then remove the folder."""
        run = self.read_run()
        if run is None:
            raise UserError(f"no unfinished run for {str(self.out)!r}: {str(self.dir)!r} is missing")
        total = len(make_chunks(run["num_images"], run["chunk_size"]))
        missing = sorted(set(range(total)) - self.done())
        if missing:
            shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
            raise UserError(f"{len(missing)} of {total} chunks are not finished yet (chunk {shown}); "
                            f"run the missing shards (or propose without --shard) first")
        import pyarrow as pa

        tables, skipped = [], []
        for number in range(total):
            path = self.chunk_path(number)
            tables.append(proposals_table.read_table(path))
            skipped.extend(json.loads((tables[-1].schema.metadata or {}).get(proposals_table.METADATA_KEY, b"{}"))
                           .get("skipped", []))
        table = pa.concat_tables([t.replace_schema_metadata(None) for t in tables])
        metadata = dict(run["metadata"])
        metadata["skipped"] = skipped
        metadata["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        proposals_table.write_table(self.out, table, metadata)
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        return table, metadata


def run_record(loaded: LoadedModel, dataset: Dataset, options: RunOptions, amp: str, catalog: str) -> dict[str, Any]:
    """`run.json`: the fingerprint of a run plus the metadata its final table will carry."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package_version = version("multilabelfy")
    except PackageNotFoundError:
        package_version = "unknown"
    spec = loaded.spec
    metadata = {
        "model": spec.name, "weights": spec.weights, "seed": spec.seed, "top_k": options.top_k,
        "num_classes": loaded.num_classes, "preprocessing": loaded.preprocessing(options.jpeg_draft),
        "catalog": catalog, "dataset": {"root": str(dataset.root), "layout": dataset.layout},
        "amp": amp, "multilabelfy_version": package_version,
    }
    if loaded.checkpoint_sha256:
        metadata["checkpoint_sha256"] = loaded.checkpoint_sha256
    fingerprint = {"model": spec.name, "weights": spec.weights, "checkpoint_sha256": loaded.checkpoint_sha256,
                   "seed": spec.seed, "top_k": options.top_k, "num_classes": loaded.num_classes,
                   "preprocessing": metadata["preprocessing"], "amp": amp, "chunk_size": options.chunk_size,
                   "num_images": len(dataset), "images_sha256": keys_digest(dataset)}
    return {**fingerprint, "metadata": metadata}


# --- one process's share, and the whole run ----------------------------------------------

@dataclass(frozen=True)
class Share:
    """Which chunks this process computes: `--shard index/count`, then torchrun's rank/world."""
    index: int = 0
    count: int = 1
    rank: int = 0
    world: int = 1

    def owns(self, chunk: Chunk) -> bool:
        if chunk.number % self.count != self.index:
            return False
        return (chunk.number // self.count) % self.world == self.rank


@dataclass
class Outcome:
    stats: Stats
    reused: int                  # images whose chunk was finished by an earlier run
    skipped: list[tuple[str, str]] = field(default_factory=list)


def compute(predictor: Predictor, dataset: Dataset, parts: Parts, share: Share,
            max_chunks: int | None = None) -> Outcome:
    """Compute this process's unfinished chunks, saving each as soon as it is done."""
    chunks = make_chunks(len(dataset), predictor.options.chunk_size)
    finished = parts.done()
    mine = [c for c in chunks if share.owns(c)]
    todo = [c for c in mine if c.number not in finished]
    if max_chunks is not None:
        todo = todo[:max_chunks]
    reused = sum(len(c) for c in mine if c.number in finished)
    stats, skipped = Stats(), []
    started = time.perf_counter()
    for result in predictor.run(dataset, todo, desc=f"propose {predictor.loaded.spec.name}"):
        parts.save(result)
        stats.images += len(result.rows["key"])
        stats.skipped += len(result.skipped)
        skipped.extend(result.skipped)
    stats.seconds = time.perf_counter() - started
    return Outcome(stats=stats, reused=reused, skipped=skipped)


def all_done(parts: Parts, num_images: int, chunk_size: int) -> bool:
    """Is every chunk of the run finished (by any process, now or earlier)?"""
    return parts.done() >= {c.number for c in make_chunks(num_images, chunk_size)}
