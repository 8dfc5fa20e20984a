"""Evaluate 57 models on ImageNetV2's released labels: our `evaluate` vs timm's RealLabelsImagenet.

The paper compares 57 models; this times the whole `evaluate` (top-1/top-5, ReaL top-1/top-5,
per-label-count groups with intervals, the fit) against the obvious alternative, feeding
timm's RealLabelsImagenet the same rankings as logits (ReaL only). Run from the repository:

    .venv/bin/python benchmarks/bench_evaluate.py
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "imagenetv2"
MODELS = 57


def main() -> int:
    import torch
    from timm.data import RealLabelsImagenet

    from multilabelfy.analysis.evaluate import Predictions, evaluate
    from multilabelfy.analysis.labels_io import load_labels

    labels = load_labels(DATA / "refined_labels.json", DATA / "original_labels.json")
    rng = np.random.default_rng(0)
    n = len(labels)
    predictions = []
    for m in range(MODELS):
        first = rng.integers(0, 1000, size=n)
        right = rng.random(n) < 0.6 + 0.3 * m / MODELS
        first[right] = labels.original[right]
        step = rng.integers(1, 200, size=(n, 1))  # distinct classes in every row
        ranked = (first[:, None] + step * np.arange(5)) % 1000
        predictions.append(Predictions(f"model-{m}", list(labels.keys), ranked))

    start = time.perf_counter()
    result = evaluate(predictions, labels)
    ours = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        real_json = Path(tmp) / "real.json"
        real_json.write_text(json.dumps([list(s) for s in labels.labels]))
        names = [f"ILSVRC2012_val_{i + 1:08d}.JPEG" for i in range(n)]
        start = time.perf_counter()
        timm_real = []
        for pred in predictions:
            evaluator = RealLabelsImagenet(names, real_json=str(real_json), topk=(1, 5))
            ranks = torch.from_numpy(pred.ranked)
            logits = torch.zeros(n, 1000).scatter_(1, ranks, torch.arange(5, 0, -1, dtype=torch.float32).expand(n, 5))
            evaluator.add_result(logits)
            timm_real.append(evaluator.get_accuracy(1))
        theirs = time.perf_counter() - start
    assert np.allclose(timm_real, [r.real_top1 for r in result.models]), "ReaL differs from timm"
    print(f"{MODELS} models x {n} images")
    print(f"multilabelfy evaluate (all metrics): {ours:.2f} s")
    print(f"timm RealLabelsImagenet (ReaL only): {theirs:.2f} s")
    print(f"ratio ours/timm: {ours / theirs:.2f}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
