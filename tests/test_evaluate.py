"""Evaluation on the final labels: ReaL as timm computes it, the fit, the intervals, the CLI."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from multilabelfy.analysis.cli import main
from multilabelfy.analysis.evaluate import (Predictions, count_groups, evaluate, linear_fit, normal_half_width,
                                            paper_margin, read_predictions, wilson_interval)
from multilabelfy.analysis.labels_io import LabelTable, load_labels
from multilabelfy.build.proposals_table import write_proposals
from test_labels_io import ORIGINAL, REFINED, needs_imagenetv2, write_labels_dir

NUM_CLASSES = 1000


def synthetic_model(table: LabelTable, name: str, error: float, other_valid: float, seed: int,
                    k: int = 5) -> tuple[list[str], np.ndarray]:
    """(keys in ImageNetV2 layout, ranked top-k) of a 'model' with a controlled error rate.

    With probability 1-error the top-1 is the original label; otherwise, with probability
    `other_valid`, another label of the image's final set (right for ReaL, wrong for
    top-1), else a class outside the set. The original follows at rank 2 half the time.
    """
    rng = np.random.default_rng(seed)
    keys, ranked = [], np.empty((len(table), k), dtype=np.int64)
    for i, (key, labels, original) in enumerate(zip(table.keys, table.labels, table.original)):
        keys.append(f"{original}/{key}")
        others = [c for c in labels if c != original]
        if rng.random() >= error:
            first = int(original)
        elif others and rng.random() < other_valid:
            first = int(rng.choice(others))
        else:
            first = int(rng.integers(NUM_CLASSES))
            while first in labels or first == original:
                first = int(rng.integers(NUM_CLASSES))
        rest = [int(original)] if first != original and rng.random() < 0.5 else []
        while len(rest) < k - 1:
            c = int(rng.integers(NUM_CLASSES))
            if c != first and c not in rest:
                rest.append(c)
        ranked[i] = [first, *rest]
    return keys, ranked


def save_model(path: Path, name: str, keys: list[str], ranked: np.ndarray, original: np.ndarray,
               order: np.ndarray | None = None) -> Path:
    """Write a model's predictions as propose's Parquet (model name in the metadata)."""
    order = np.arange(len(keys)) if order is None else order
    k = ranked.shape[1]
    rows = {"key": [keys[i] for i in order], "label": [int(original[i]) for i in order],
            "classes": [ranked[i].tolist() for i in order],
            "probs": [list(np.linspace(0.5, 0.1, k, dtype=np.float32)) for _ in order],
            "label_rank": [1] * len(order), "label_prob": [0.5] * len(order), "label_added": [False] * len(order)}
    write_proposals(path, rows, {"model": name, "weights": "synthetic", "top_k": k, "num_classes": NUM_CLASSES})
    return path


MODELS = [  # name, error rate, share of errors that are another valid label
    ("synthetic-a", 0.10, 0.6), ("synthetic-b", 0.20, 0.5), ("synthetic-c", 0.30, 0.5),
    ("synthetic-d", 0.40, 0.3), ("synthetic-e", 0.25, 0.9),
]


@pytest.fixture(scope="module")
def imagenetv2() -> LabelTable:
    return load_labels(REFINED, ORIGINAL)


@pytest.fixture(scope="module")
def model_files(imagenetv2: LabelTable, tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("predictions")
    paths = []
    for seed, (name, error, other) in enumerate(MODELS):
        keys, ranked = synthetic_model(imagenetv2, name, error, other, seed)
        order = np.random.default_rng(100 + seed).permutation(len(keys))  # rows in another order
        paths.append(save_model(folder / f"{name}.parquet", name, keys, ranked, imagenetv2.original, order))
    return paths


def timm_real(table: LabelTable, pred: Predictions, tmp_path: Path) -> dict[int, float]:
    """ReaL top-1/top-5 from timm's RealLabelsImagenet, fed logits that rank like `pred`."""
    import torch
    from timm.data import RealLabelsImagenet

    real_json = tmp_path / "real.json"
    real_json.write_text(json.dumps([list(s) for s in table.labels]))
    names = [f"ILSVRC2012_val_{i + 1:08d}.JPEG" for i in range(len(table))]
    row_of = {key.split("/", 1)[1]: i for i, key in enumerate(pred.keys)}
    ranked = pred.ranked[[row_of[k] for k in table.keys]]  # timm needs dataset order
    evaluator = RealLabelsImagenet(names, real_json=str(real_json), topk=(1, 5))
    for start in range(0, len(ranked), 2000):
        chunk = torch.from_numpy(ranked[start:start + 2000])
        logits = torch.zeros(len(chunk), NUM_CLASSES)
        logits.scatter_(1, chunk, torch.arange(chunk.shape[1], 0, -1, dtype=torch.float32).expand_as(chunk).clone())
        evaluator.add_result(logits)
    return evaluator.get_accuracy()


@needs_imagenetv2
def test_real_accuracy_equals_timm_real_labels(imagenetv2: LabelTable, model_files: list[Path], tmp_path: Path):
    predictions = read_predictions(model_files[:2])
    assert [p.model for p in predictions] == ["synthetic-a", "synthetic-b"]
    result = evaluate(predictions, imagenetv2)
    for pred, model in zip(predictions, result.models):
        expected = timm_real(imagenetv2, pred, tmp_path)
        assert model.real_top1 == pytest.approx(expected[1], abs=1e-9)
        assert model.real_top5 == pytest.approx(expected[5], abs=1e-9)
        assert model.images == 10_000 and model.real_images == 10_000 - 129
        # top-1 against the original, by hand
        own = pred.ranked[:, 0] == pred.labels
        assert model.top1 == pytest.approx(100 * own.mean())
    assert result.models[0].real_top1 > result.models[1].real_top1  # the better model stays better


@needs_imagenetv2
def test_per_label_count_groups_and_intervals(imagenetv2: LabelTable, model_files: list[Path]):
    result = evaluate(read_predictions(model_files[:1]), imagenetv2)
    assert result.label_groups == ["0", "1", "2", "3", ">3"]
    rows = {g.label_count: g for g in result.groups}
    assert sum(g.n for g in rows.values()) == 10_000
    assert rows["0"].n == 129 and rows["1"].n == 5083 and rows["2"].n == 2385
    pred = read_predictions(model_files[:1])[0]
    counts = {k: len(s) for k, s in zip(imagenetv2.keys, imagenetv2.labels)}
    in_group = np.array([counts[k.split("/", 1)[1]] >= 4 for k in pred.keys])
    p = float((pred.ranked[in_group, 0] == pred.labels[in_group]).mean())
    n = int(in_group.sum())
    big = rows[">3"]
    assert big.n == n and big.accuracy == pytest.approx(100 * p)
    assert big.normal_half_width == pytest.approx(100 * 1.96 * math.sqrt(p * (1 - p) / n), rel=1e-4)
    assert big.paper_margin == pytest.approx(big.normal_half_width / math.sqrt(n))
    assert big.wilson_low < big.accuracy < big.wilson_high
    assert math.isnan(rows["0"].real_accuracy) and rows["1"].real_n == 5083


def test_intervals_against_hand_computed_values():
    # normal half-width: 1.96 * sqrt(0.9 * 0.1 / 100) = 1.96 * 0.03
    assert normal_half_width(0.9, 100) == pytest.approx(0.0588, abs=1e-5)
    assert paper_margin(0.9, 100) == pytest.approx(0.00588, abs=1e-6)
    # Wilson's bounds solve (p - p_hat)^2 = z^2 p (1 - p) / n: a quadratic in p
    for p_hat, n in [(0.9, 100), (0.5, 7), (0.0, 10), (1.0, 3), (0.3, 2)]:
        z2 = 1.959963984540054 ** 2
        a, b, c = 1 + z2 / n, -(2 * p_hat + z2 / n), p_hat ** 2
        disc = math.sqrt(b * b - 4 * a * c)
        low, high = wilson_interval(p_hat, n)
        assert low == pytest.approx((-b - disc) / (2 * a), abs=1e-12)
        assert high == pytest.approx((-b + disc) / (2 * a), abs=1e-12)
    # the textbook value: 0 successes out of 10 -> [0, 0.2775]
    assert wilson_interval(0.0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    assert all(math.isnan(v) for v in (*wilson_interval(0.5, 0), normal_half_width(0.5, 0)))


def test_linear_fit_equals_polyfit_and_hand_computation():
    top1 = [70.0, 75.5, 80.2, 84.9, 88.1, 90.3]
    real = [77.1, 81.0, 86.5, 88.2, 91.0, 92.4]
    names = list("abcdef")
    fit = linear_fit(top1, real, names, outliers=2)
    slope, intercept = np.polyfit(top1, real, 1)
    assert fit.slope == pytest.approx(slope) and fit.intercept == pytest.approx(intercept)
    # hand: R^2 of a simple linear fit is the squared Pearson correlation
    r = np.corrcoef(top1, real)[0, 1]
    assert fit.r2 == pytest.approx(r * r)
    residuals = np.array(real) - np.polyval([slope, intercept], top1)
    worst = np.argsort(-np.abs(residuals))[:2]
    assert [o["model"] for o in fit.outliers] == [names[i] for i in worst]
    assert fit.outliers[0]["residual"] == pytest.approx(residuals[worst[0]])
    # three points on a line: exact slope and intercept, R^2 = 1
    exact = linear_fit([1, 2, 4], [3, 5, 9], ["x", "y", "z"])
    assert (exact.slope, exact.intercept, exact.r2) == pytest.approx((2.0, 1.0, 1.0))
    assert linear_fit([80, 80], [85, 86], ["p", "q"]) is None  # no spread in top-1
    assert linear_fit([80, float("nan")], [85, 86], ["p", "q"]) is None


def test_count_groups_follow_the_data():
    assert [g[0] for g in count_groups(np.array([1, 1, 2]))] == ["1", "2"]
    assert [g[0] for g in count_groups(np.array([0, 1, 5, 9]), max_exact=2)] == ["0", "1", ">2"]


@needs_imagenetv2
def test_evaluate_command_writes_tables(imagenetv2: LabelTable, model_files: list[Path], tmp_path: Path, capsys):
    # a LABELS_DIR with dataset keys, and one more model given as CSV from elsewhere
    keys = [f"{o}/{k}" for k, o in zip(imagenetv2.keys, imagenetv2.original)]
    labels_dir = write_labels_dir(tmp_path / "labels", keys, [list(s) for s in imagenetv2.labels],
                                  imagenetv2.original.tolist())
    ckeys, cranked = synthetic_model(imagenetv2, "elsewhere", 0.5, 0.5, seed=42, k=3)
    with (tmp_path / "other.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["key", "model", "predictions"])
        for key, row in zip(ckeys, cranked):
            writer.writerow([key.split("/", 1)[1], "elsewhere-net", " ".join(map(str, row))])
    out = tmp_path / "eval"
    code = main(["evaluate", "--labels", str(labels_dir), "--predictions", *map(str, model_files),
                 str(tmp_path / "other.csv"), "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "6 model(s) on 10000 labelled images" in printed and "R^2" in printed
    with (out / "models.csv").open() as fh:
        models = list(csv.DictReader(fh))
    assert [m["model"] for m in models] == [m[0] for m in MODELS] + ["elsewhere-net"]
    elsewhere = models[-1]
    assert elsewhere["top5"] == "" and elsewhere["real_top5"] == ""  # only 3 predictions
    assert float(elsewhere["top1"]) == pytest.approx(100 * np.mean(cranked[:, 0] == imagenetv2.original), abs=1e-3)
    fit = json.loads((out / "fit.json").read_text())
    x = [float(m["top1"]) for m in models]
    y = [float(m["real_top1"]) for m in models]
    assert fit["slope"] == pytest.approx(np.polyfit(x, y, 1)[0], rel=1e-4)
    assert fit["models"] == 6 and 0 < fit["r2"] <= 1
    with (out / "by_label_count.csv").open() as fh:
        groups = list(csv.DictReader(fh))
    assert len(groups) == 6 * 5
    assert {g["label_count"] for g in groups} == {"0", "1", "2", "3", ">3"}


def test_evaluate_command_user_errors(tmp_path: Path, capsys):
    labels_dir = write_labels_dir(tmp_path / "labels", ["1/a.jpg", "2/b.jpg"], [[1], [2]], [1, 2])
    missing = main(["evaluate", "--labels", str(labels_dir), "--predictions", str(tmp_path / "no.parquet"),
                    "--out", str(tmp_path / "out")])
    assert missing == 2 and "no.parquet" in capsys.readouterr().err
    foreign = tmp_path / "foreign.csv"
    foreign.write_text("key,model,predictions\nzzz.jpg,m,1 2\n")
    assert main(["evaluate", "--labels", str(labels_dir), "--predictions", str(foreign),
                 "--out", str(tmp_path / "out")]) == 2
    assert "no image of" in capsys.readouterr().err
    foreign.write_text("key,model,predictions\na.jpg,m,1 x\n")
    assert main(["evaluate", "--labels", str(labels_dir), "--predictions", str(foreign),
                 "--out", str(tmp_path / "out")]) == 2
    assert "line 2" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_real_timm_models_from_propose(photo_dataset, tmp_path: Path, capsys):
    """Two real timm test models run by `multilabelfy-build propose`, then `evaluate` on their tables."""
    from multilabelfy.build.cli import main as build_main
    from multilabelfy.build.proposals_table import read_proposals

    root, originals = photo_dataset
    tables = []
    for name in ("test_resnet", "test_efficientnet"):
        out = tmp_path / f"{name}.parquet"
        assert build_main(["propose", "--data", str(root), "--model", name, "--random-weights", "--top-k", "5",
                           "--workers", "0", "--out", str(out)]) == 0
        tables.append(out)
    capsys.readouterr()
    frame, meta = read_proposals(tables[0])
    first = {k: int(c[0]) for k, c in zip(frame["key"], frame["classes"])}
    # final labels: the original, plus test_resnet's own top-1 on every other image
    keys = list(originals)
    sets = [[originals[k]] + ([first[k]] if i % 2 == 0 and first[k] != originals[k] else [])
            for i, k in enumerate(keys)]
    labels_dir = write_labels_dir(tmp_path / "labels", keys, sets, [originals[k] for k in keys])
    out = tmp_path / "eval"
    assert main(["evaluate", "--labels", str(labels_dir), "--predictions", *map(str, tables), "--out", str(out)]) == 0
    with (out / "models.csv").open() as fh:
        models = {m["model"]: m for m in csv.DictReader(fh)}
    assert set(models) == {"test_resnet", "test_efficientnet"} and meta["model"] == "test_resnet"
    resnet = models["test_resnet"]
    top1 = np.mean([first[k] == originals[k] for k in keys])
    real = np.mean([first[k] in s for k, s in zip(keys, sets)])
    assert float(resnet["top1"]) == pytest.approx(100 * top1, abs=1e-3)
    assert float(resnet["real_top1"]) == pytest.approx(100 * real, abs=1e-3)
    assert float(resnet["real_top1"]) >= 50.0  # its own top-1 is valid on half the images
    assert int(resnet["images"]) == len(keys) == 8


def test_same_predictions_file_twice_is_refused(tmp_path: Path) -> None:
    from multilabelfy.analysis.evaluate import read_predictions
    from multilabelfy.collector.clitools import UserError

    path = tmp_path / "p.csv"
    path.write_text("key,model,predictions\na.jpg,m,1 2 3\n")
    assert [p.model for p in read_predictions([path])] == ["m"]
    with pytest.raises(UserError, match="twice"):
        read_predictions([path, tmp_path / "." / "p.csv"])
    with pytest.raises(UserError, match="does not exist"):
        read_predictions([tmp_path / "missing.parquet"])
