"""Agreement statistics against published values and against plain loops over all pairs."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from multilabelfy.analysis import agreement, disagreement, inputs, simulate
from multilabelfy.analysis.labelsets import LabelSets, masi_distance, pair_stats

from conftest import IMAGENETV2


def masi(a: set, b: set) -> float:
    """MASI by its definition (Passonneau 2006), as NLTK writes it, with empty == empty."""
    if a == b:
        return 0.0
    m = 0.67 if (a <= b or b <= a) and a & b else 0.33 if a & b else 0.0
    return 1 - len(a & b) / len(a | b) * m


def alpha_by_loops(units: list[list[set]], delta) -> float:
    """Krippendorff's alpha straight from the definition: every ordered pair of values."""
    units = [u for u in units if len(u) >= 2]
    values = [v for u in units for v in u]
    n = len(values)
    observed = sum(sum(delta(a, b) for a, b in itertools.permutations(u, 2)) / (len(u) - 1) for u in units) / n
    expected = sum(delta(a, b) for a, b in itertools.permutations(values, 2)) / (n * (n - 1))
    return 1 - observed / expected


def as_arrays(units: list[list[set]]) -> tuple[LabelSets, np.ndarray]:
    unit = np.array([i for i, u in enumerate(units) for _ in u])
    return LabelSets.from_lists([sorted(v) for u in units for v in u]).canonical(), unit


def test_krippendorff_published_example() -> None:
    """Krippendorff (2011), 'Computing Krippendorff's alpha-reliability', 4 coders, 12 units with
    gaps: nominal alpha = 0.743. Singleton sets under MASI are exactly the nominal metric."""
    coders = ["1 2 3 3 2 1 4 1 2 . . .", "1 2 3 3 2 2 4 1 2 5 . 3",
              ". 3 3 3 2 3 4 2 2 5 1 .", "1 2 3 3 2 4 4 1 2 5 1 ."]
    table = [row.split() for row in coders]
    units = [[{int(row[u])} for row in table if row[u] != "."] for u in range(12)]
    alpha, method = agreement.krippendorff_alpha_sets(*as_arrays(units))
    assert method == "exact"
    assert round(alpha, 3) == 0.743


def test_masi_distance_cases() -> None:
    pairs = [({1}, {1}), ({1}, {1, 2}), ({1, 2}, {2, 3}), ({1}, {2}), (set(), set()), (set(), {4}), ({1, 2, 3}, {3})]
    sets = LabelSets.from_lists([sorted(x) for p in pairs for x in p]).canonical()
    a = np.arange(0, 2 * len(pairs), 2)
    got = masi_distance(*pair_stats(sets, a, a + 1))
    assert got == pytest.approx([masi(x, y) for x, y in pairs])
    assert got[1] == pytest.approx(1 - 0.5 * 0.67) and got[2] == pytest.approx(1 - 1 / 3 * 0.33)


def test_set_alpha_matches_loops_and_sampling() -> None:
    rng = np.random.default_rng(3)
    units = []
    for _ in range(120):
        true = set(rng.choice(12, size=rng.integers(0, 4), replace=False).tolist())
        coders = rng.integers(1, 5)  # 1..4 values: lone values are not pairable
        units.append([{x for x in true if rng.random() > 0.2} | ({int(rng.integers(12))} if rng.random() < 0.2 else set())
                      for _ in range(coders)])
    expected = alpha_by_loops(units, masi)
    alpha, method = agreement.krippendorff_alpha_sets(*as_arrays(units))
    assert method == "exact" and alpha == pytest.approx(expected, abs=1e-12)
    sampled, method = agreement.krippendorff_alpha_sets(*as_arrays(units), max_exact_pairs=0, sample_pairs=400_000)
    assert method == "sampled" and sampled == pytest.approx(expected, abs=0.01)


def test_project_statistics_match_loops(tmp_path: Path) -> None:
    truth = simulate.imagenetv2_truth(IMAGENETV2, limit=250)  # classes 0-24, so labels recur
    project = simulate.project(tmp_path, truth, batches=2, annotators=("alice", "bob", "dave"), per_batch=3,
                               miss=0.15, extra=0.02, skip=0.1, seed=5)
    result = disagreement.analyse(inputs.load_inputs(project.site, project.private, project.store))
    stats = agreement.agreement(result.answers, min_units=8)

    latest = {(r["image"], r["annotator"]): r for r in
              (__import__("json").loads(line) for line in project.store.read_text().splitlines())}
    units, shown_of = [], []
    for batch, pages in project.manifest.stages["annotate"].items():
        for page in pages:
            answers = [set(latest[(page.key, w)]["labels"]) for w in project.assignments[batch]
                       if (page.key, w) in latest]
            if len(answers) >= 2:
                units.append(answers)
                shown_of.append(page.shown)
    assert stats["units"] == len(units)
    assert stats["exact_match_rate"] == pytest.approx(np.mean([all(a == u[0] for a in u) for u in units]), abs=1e-6)
    jac = [np.mean([len(a & b) / len(a | b) if a | b else 1.0 for a, b in itertools.combinations(u, 2)]) for u in units]
    assert stats["mean_jaccard"] == pytest.approx(np.mean(jac), abs=1e-6)
    assert stats["krippendorff_alpha_masi"] == pytest.approx(alpha_by_loops(units, masi), abs=1e-6)

    nominal = lambda a, b: float(a != b)  # noqa: E731
    checked = 0
    for item in stats["per_label_alpha"]:
        label = item["label"]
        binary = [[label in a for a in u] for u, shown in zip(units, shown_of) if label in shown]
        assert item["n"] == len(binary) >= 8
        values = [v for u in binary for v in u]
        if all(values) or not any(values):
            assert item["alpha"] is None
            continue
        assert item["alpha"] == pytest.approx(alpha_by_loops(binary, nominal), abs=1e-4)
        checked += 1
    assert checked >= 3
