"""Helpers shared by the `propose` tests: run the command, read its table, compute by hand."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def propose_args(data: Path, out: Path, *extra: str, model: str = "test_vit") -> list[str]:
    return ["propose", "--data", str(data), "--model", model, "--random-weights", "--top-k", "20",
            "--out", str(out), *extra]


def run_cli(args: list[str], capsys=None) -> tuple[int, str, str]:
    """Run `multilabelfy-build` in this process (fast: torch is imported once)."""
    from multilabelfy.build.cli import main

    code = main(args)
    if capsys is None:
        return code, "", ""
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_script(args: list[str], timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run the installed console script in a fresh process, as a user would."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([str(VENV_BIN / "multilabelfy-build"), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, **kwargs)


def read_table(path: Path):
    from multilabelfy.build.proposals_table import read_proposals

    return read_proposals(path)


def same_rows(a, b) -> None:
    """Two tables hold the same proposals (metadata's `created` aside)."""
    assert list(a["key"]) == list(b["key"])
    assert list(a["label"]) == list(b["label"])
    assert [list(x) for x in a["classes"]] == [list(x) for x in b["classes"]]
    assert [list(x) for x in a["probs"]] == [list(x) for x in b["probs"]]
    assert list(a["label_rank"]) == list(b["label_rank"])
    assert list(a["label_added"]) == list(b["label_added"])


def reference_probs(root: Path, keys: list[str], model: str = "test_vit", seed: int = 0):
    """A plain timm loop over the images, in one batch: softmax over all classes."""
    import timm
    import torch
    from PIL import Image

    torch.manual_seed(seed)
    net = timm.create_model(model, pretrained=False).eval()
    config = timm.data.resolve_model_data_config(net)
    transform = timm.data.create_transform(**config, is_training=False)
    images = []
    for key in keys:
        with Image.open(root / key) as image:
            images.append(transform(image.convert("RGB")))
    with torch.inference_mode():
        return net(torch.stack(images)).softmax(dim=1), config
