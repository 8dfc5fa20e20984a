"""`propose` against a plain hand-written timm loop, on the same images and model, in one run.

The plain loop is what one writes first: open each image, transform it, stack a batch,
forward, softmax, top-k, all in one process. `propose` adds worker processes, pinned
memory, channels-last + autocast on a GPU, chunked saving and the Parquet table. On a GPU
the script also reports the model's forward-only rate on ready tensors (what timm's
`benchmark.py --bench inference` measures), the ceiling for both.

    .venv/bin/python benchmarks/bench_propose.py                      # CPU, small model
    python benchmarks/bench_propose.py --device cuda --images 4096 --batch-size 128 \\
        --workers 16 --model eva02_large_patch14_448.mim_m38m_ft_in22k_in1k
Random weights (no download): the speed does not depend on the weights' values.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # conftest's real photos


def make_images(root: Path, count: int) -> None:
    """`count` distinct JPEGs of ImageNet-like size (about 500x375) cut from real photos."""
    from PIL import Image, ImageOps

    from conftest import PHOTOS, skimage_photo

    sources = []
    for name, label in PHOTOS.items():
        with Image.open(skimage_photo(name)) as image:
            sources.append((label, image.convert("RGB").resize((600, 450))))
    for i in range(count):
        label, image = sources[i % len(sources)]
        dx, dy = (i * 7) % 100, (i * 3) % 75
        variant = image.crop((dx, dy, dx + 500, dy + 375))
        if (i // len(sources)) % 2:
            variant = ImageOps.mirror(variant)
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        variant.save(folder / f"img_{i:06d}.jpeg", quality=90)


def plain_loop(root: Path, model_name: str, batch_size: int, device: str) -> tuple[float, int]:
    """The obvious loop: open, transform, forward, top-k; returns (seconds, images)."""
    import timm
    import torch
    from PIL import Image

    start = time.perf_counter()
    model = timm.create_model(model_name, pretrained=False).eval().to(device)
    config = timm.data.resolve_model_data_config(model)
    transform = timm.data.create_transform(**config, is_training=False)
    files = sorted(root.rglob("*.jpeg"))
    amp = (torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else contextlib.nullcontext())
    for i in range(0, len(files), batch_size):
        batch = []
        for path in files[i:i + batch_size]:
            with Image.open(path) as image:
                batch.append(transform(image.convert("RGB")))
        with torch.inference_mode(), amp:
            probs = model(torch.stack(batch).to(device)).float().softmax(dim=1)
            probs.topk(20, dim=1)[1].cpu()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, len(files)


def propose(root: Path, out: Path, model_name: str, batch_size: int, workers: int | None, device: str,
            draft: bool) -> float:
    from multilabelfy.build.cli import main

    args = ["propose", "--data", str(root), "--model", model_name, "--random-weights", "--top-k", "20",
            "--out", str(out), "--overwrite", "--batch-size", str(batch_size), "--device", device]
    if workers is not None:
        args += ["--workers", str(workers)]
    if draft:
        args.append("--jpeg-draft")
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(args) == 0
    return time.perf_counter() - start


def forward_only(model_name: str, batch_size: int, steps: int = 20) -> float:
    """Images/s of the model alone on ready GPU tensors (channels-last, bf16), like timm's benchmark.py."""
    import timm
    import torch

    model = timm.create_model(model_name, pretrained=False).eval().cuda().to(memory_format=torch.channels_last)
    size = timm.data.resolve_model_data_config(model)["input_size"]
    x = torch.randn(batch_size, *size, device="cuda").contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        for _ in range(3):
            model(x)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            model(x)
        torch.cuda.synchronize()
    return batch_size * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18", help="timm model (random weights)")
    parser.add_argument("--images", type=int, default=128, help="JPEGs to generate")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size of both")
    parser.add_argument("--workers", type=int, default=None, help="propose's --workers (default: its own)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where both run")
    parser.add_argument("--repeats", type=int, default=2, help="alternate runs of each; the best counts")
    parser.add_argument("--jpeg-draft", action="store_true", help="also time propose --jpeg-draft")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        make_images(root, args.images)
        plain, ours, drafted = [], [], []
        for _ in range(args.repeats):
            seconds, count = plain_loop(root, args.model, args.batch_size, args.device)
            plain.append(seconds)
            ours.append(propose(root, Path(tmp) / "p.parquet", args.model, args.batch_size, args.workers,
                                args.device, False))
            if args.jpeg_draft:
                drafted.append(propose(root, Path(tmp) / "p.parquet", args.model, args.batch_size,
                                       args.workers, args.device, True))
    rate = lambda s: count / min(s)  # noqa: E731
    print(f"\n{count} images, {args.model}, batch {args.batch_size}, {args.device}, best of {args.repeats}")
    print(f"plain timm loop : {rate(plain):8.1f} img/s")
    print(f"propose         : {rate(ours):8.1f} img/s   ratio propose/plain = {rate(ours) / rate(plain):.2f}")
    if drafted:
        print(f"propose --jpeg-draft: {rate(drafted):8.1f} img/s   ratio = {rate(drafted) / rate(plain):.2f}")
    if args.device == "cuda":
        ceiling = forward_only(args.model, args.batch_size)
        print(f"forward only    : {ceiling:8.1f} img/s   propose / forward-only = {rate(ours) / ceiling:.2f}")


if __name__ == "__main__":
    main()
