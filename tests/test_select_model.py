"""Model selection by ReaL accuracy, checked against timm's own `RealLabelsImagenet`."""
from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest
import torch
from test_propose_helpers import read_table, reference_probs, run_cli
from timm.data import RealLabelsImagenet

from conftest import write_photo_dataset
from multilabelfy.build.metrics import real_accuracy
from multilabelfy.build.select_model import align_label_sets, read_label_sets
from multilabelfy.collector.clitools import UserError


def _timm_real(scores: torch.Tensor, filenames: list[str], real_json, topk=(1, 5)) -> dict[int, float]:
    """timm's evaluator on the same predictions, fed in batches as its validate loop does."""
    real = RealLabelsImagenet(filenames, real_json=str(real_json), topk=topk)
    for batch in scores.split(7):
        real.add_result(batch)
    return real.get_accuracy()


def test_real_accuracy_equals_timm(tmp_path):
    rng = random.Random(3)
    n, classes = 60, 50
    scores = torch.randn(n, classes, generator=torch.Generator().manual_seed(3))
    top = scores.topk(5, dim=1).indices
    label_sets = []
    for i in range(n):
        kind = i % 4
        labels = {rng.randrange(classes) for _ in range(rng.randrange(1, 4))}
        if kind == 0:
            labels.add(int(top[i, 0]))            # top-1 right
        elif kind == 1:
            labels.add(int(top[i, 3]))            # only top-5 right (unless chance)
        elif kind == 2:
            labels = set()                        # no valid label: left out
        label_sets.append(sorted(labels))
    real_json = tmp_path / "real.json"
    real_json.write_text(json.dumps(label_sets))
    # files in a different order than their numbers, as in an ImageFolder listing
    numbers = list(range(1, n + 1))
    rng.shuffle(numbers)
    filenames = [f"n{num % 5:08d}/ILSVRC2012_val_{num:08d}.JPEG" for num in numbers]
    by_file = align_label_sets(read_label_sets(real_json), filenames)  # auto -> filename order
    aligned = [by_file[f] for f in filenames]
    assert aligned == [label_sets[num - 1] for num in numbers]
    shuffled_scores = scores[[num - 1 for num in numbers]]
    predictions = shuffled_scores.topk(5, dim=1).indices.numpy()
    timm_acc = _timm_real(shuffled_scores, filenames, real_json)
    ours = {k: real_accuracy(predictions, aligned, k=k) for k in (1, 5)}
    assert ours == pytest.approx(timm_acc, abs=1e-9)
    assert 0 < ours[1] < ours[5] < 100  # a real mix of right and wrong


def test_label_files_are_checked(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1}')
    with pytest.raises(UserError, match="ReaL form"):
        read_label_sets(bad)
    with pytest.raises(UserError, match="3 entries but the dataset has 2"):
        align_label_sets([[1], [2], [3]], ["0/a.jpeg", "0/b.jpeg"])
    assert len(read_label_sets("imagenet-real")) == 50000  # timm's bundled copy


def test_select_model_ranks_by_real_accuracy(tmp_path, capsys):
    root = tmp_path / "data"
    labels = write_photo_dataset(root, per_class=2)
    keys = sorted(labels, key=lambda k: (labels[k], k))
    probs = {m: reference_probs(root, keys, model=m)[0] for m in ("test_vit", "test_convnext")}
    top1 = {m: p.argmax(dim=1).tolist() for m, p in probs.items()}
    # label sets: test_convnext's top-1 is valid for 12 images, test_vit's for 5; 2 images have none
    label_sets = []
    for i, key in enumerate(keys):
        chosen = {labels[key]}
        if i < 12:
            chosen.add(top1["test_convnext"][i])
        if i % 3 == 0:
            chosen.add(top1["test_vit"][i])
        label_sets.append(sorted(chosen) if i < 14 else [])
    real_json = tmp_path / "real.json"
    real_json.write_text(json.dumps(label_sets))
    out = tmp_path / "ranking.csv"
    code = run_cli(["select-model", "--data", str(root), "--labels", str(real_json), "--random-weights",
                    "--models", "test_vit,test_convnext", "--workers", "0", "--out", str(out),
                    "--save-dir", str(tmp_path)])[0]
    printed = capsys.readouterr().out
    assert code == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["model"] for r in rows] == ["test_convnext", "test_vit"] and printed.index("test_convnext") < printed.index("test_vit")
    filenames = [f"ILSVRC2012_val_{i + 1:08d}.JPEG" for i in range(len(keys))]  # timm's naming, same order
    for row in rows:
        model = row["model"]
        table, metadata = read_table(tmp_path / f"{model}.parquet")
        assert list(table["key"]) == keys and metadata["model"] == model
        predicted = np.stack(table["classes"])
        assert predicted[:, 0].tolist() == top1[model]
        # timm scores the same ranked predictions: fake logits that rank them in the same order
        scores = torch.zeros(len(keys), 1000)
        for i, ranked in enumerate(predicted):
            scores[i, ranked] = torch.arange(len(ranked), 0, -1, dtype=torch.float32)
        timm_acc = _timm_real(scores, filenames, real_json)
        assert float(row["real_top1"]) == pytest.approx(timm_acc[1])
        assert float(row["real_top5"]) == pytest.approx(timm_acc[5])
        assert int(row["real_images"]) == 14 and int(row["images"]) == 16
        hits = sum(top1[model][i] == labels[k] for i, k in enumerate(keys))
        assert float(row["top1"]) == pytest.approx(100 * hits / 16)
    assert float(rows[0]["real_top1"]) >= 100 * 12 / 14  # convnext's planted hits all count
