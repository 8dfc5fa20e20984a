"""How much the first-stage annotators agree: exact match, Jaccard, Krippendorff's alpha.

Units are the images with at least two answers (Krippendorff's "pairable" units; with
every annotator answering, that is every complete image); values are the answered label
sets. Krippendorff's alpha = 1 - D_o / D_e with

    D_o = 1/n · Σ_u 1/(m_u - 1) · Σ_{c ≠ k in u} δ(c, k)
    D_e = 1/(n (n - 1)) · Σ_{c ≠ k over all n values} δ(c, k)

and δ the MASI distance between label sets (Passonneau 2006: 1 - Jaccard · M, M = 1
equal, 0.67 subset, 0.33 overlap, 0 disjoint). D_e runs over pairs of *distinct set
values* weighted by their counts, exactly while there are at most `max_exact_pairs`
pairs of distinct sets, else it is estimated from `sample_pairs` random pairs (seeded;
the method is reported).

Per label, a binary alpha over the yes/no question "is label c valid?", over the
images whose page showed c, for labels shown on at least `min_units` such images.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from multilabelfy.analysis.disagreement import StageAnswers
from multilabelfy.analysis.labelsets import LabelSets, jaccard, masi_distance, pair_stats, unique_counts

MAX_EXACT_PAIRS = 10_000_000
EXACT_CHUNK = 2_000_000
SAMPLE_PAIRS = 1_000_000


def unit_pairs(unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All unordered pairs (i, j), i < j, of values that share a unit (`unit` sorted)."""
    a_parts, b_parts = [], []
    sizes = np.bincount(unit) if len(unit) else np.zeros(0, np.int64)
    for d in range(1, int(sizes.max()) if len(sizes) else 0):
        i = np.flatnonzero(unit[:-d] == unit[d:])
        a_parts.append(i)
        b_parts.append(i + d)
    if not a_parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(a_parts), np.concatenate(b_parts)


def krippendorff_alpha_sets(sets: LabelSets, unit: np.ndarray, seed: int = 0,
                            max_exact_pairs: int = MAX_EXACT_PAIRS,
                            sample_pairs: int = SAMPLE_PAIRS) -> tuple[float, str]:
    """(alpha, "exact" or "sampled") with MASI distance; `sets` canonical, `unit` sorted ids.

    Values alone in their unit are not pairable and are left out, as Krippendorff does.
    """
    unit = np.asarray(unit, dtype=np.int64)
    if len(unit) > 1 and not np.all(unit[1:] >= unit[:-1]):
        raise ValueError("values must be grouped by unit (unit ids ascending)")
    _, sizes = unique_counts(unit)
    keep = np.repeat(sizes >= 2, sizes)  # lone values are not pairable
    kept = unit[keep]
    sets = sets.take(np.flatnonzero(keep))
    unit = np.concatenate(([0], np.cumsum(kept[1:] != kept[:-1]))) if len(kept) else kept  # ids 0..k-1
    m = np.bincount(unit)
    n = len(unit)
    if n < 2:
        return float("nan"), "exact"
    a, b = unit_pairs(unit)
    delta = masi_distance(*pair_stats(sets, a, b))
    observed = float(np.sum(2.0 * delta / (m[unit[a]] - 1))) / n

    codes = sets.set_ids()
    counts = np.bincount(codes).astype(np.float64)
    d = len(counts)
    representative = np.zeros(d, dtype=np.int64)
    representative[codes] = np.arange(n)  # any member of each distinct set
    if d * (d - 1) // 2 <= max_exact_pairs:
        total = 0.0
        step = max(1, EXACT_CHUNK // max(d, 1))
        for first in range(0, d, step):  # the upper triangle of distinct-set pairs, a band of rows at a time
            s, t = _triangle_rows(d, first, step)
            total += float(np.sum(counts[s] * counts[t] * masi_distance(
                *pair_stats(sets, representative[s], representative[t]))))
        expected = 2.0 * total / (n * (n - 1))
        method = "exact"
    else:
        rng = np.random.default_rng(seed)
        i = rng.integers(0, n, size=sample_pairs)
        j = (i + rng.integers(1, n, size=sample_pairs)) % n  # uniform over j != i
        expected = float(np.mean(masi_distance(*pair_stats(sets, i, j))))
        method = "sampled"
    if expected == 0:
        return float("nan"), method
    return 1.0 - observed / expected, method


def _triangle_rows(d: int, first: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (s, t), s < t, for rows first .. first + count - 1 of the d × d upper triangle."""
    rows = np.arange(first, min(d, first + count))
    lengths = d - 1 - rows
    s = np.repeat(rows, lengths)
    ends = np.cumsum(lengths)
    t = np.arange(int(ends[-1]) if len(ends) else 0) - np.repeat(ends - lengths, lengths) + np.repeat(rows + 1, lengths)
    return s, t


def binary_alpha(units: np.ndarray, n_values: np.ndarray, ones: np.ndarray, disagreement: np.ndarray) -> np.ndarray:
    """Nominal alpha for yes/no values, from per-question totals (vectorised over questions).

    `units`: pairable units; `n_values`: Σ m_u; `ones`: number of "yes" values;
    `disagreement`: Σ_u 2 · yes_u · no_u / (m_u - 1). NaN where everyone said the same.
    """
    n = n_values.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        observed = disagreement / n
        expected = 2.0 * ones * (n - ones) / (n * (n - 1))
        alpha = 1.0 - observed / expected
    return np.where((expected > 0) & (units > 0), alpha, np.nan)


def per_label_alpha(answers: StageAnswers, pairable: np.ndarray, min_units: int) -> list[dict[str, Any]]:
    """Binary alpha per label over the pairable pages that showed it (label, n units, alpha)."""
    slots = answers.slots
    image = slots["image"].to_numpy()
    answered = slots["answered"].to_numpy()
    m = np.bincount(image, weights=answered, minlength=len(answers.images))
    pages = np.flatnonzero(pairable)
    shown = answers.shown.take(pages)
    owner = pages[shown.row_ids()]
    width = max(int(shown.values.max()) + 1 if len(shown.values) else 1, answers_width(answers))
    units = np.bincount(shown.values, minlength=width)
    n_values = np.bincount(shown.values, weights=m[owner], minlength=width)
    use = answered & pairable[image]
    rows = answers.sets.row_ids()
    chosen_keys = image[rows][use[rows]] * width + answers.sets.values[use[rows]]
    keys, yes = unique_counts(chosen_keys)
    page_of, label = np.divmod(keys, width)
    mu = m[page_of]
    ones = np.bincount(label, weights=yes, minlength=width)
    disagreement = np.bincount(label, weights=2.0 * yes * (mu - yes) / np.maximum(mu - 1, 1), minlength=width)
    alpha = binary_alpha(units, n_values, ones, disagreement)
    return [{"label": int(c), "n": int(units[c]), "alpha": None if np.isnan(alpha[c]) else round(float(alpha[c]), 4)}
            for c in np.flatnonzero(units >= min_units)]


def answers_width(answers: StageAnswers) -> int:
    values = answers.sets.values
    return int(values.max()) + 1 if len(values) else 1


def agreement(answers: StageAnswers, min_units: int = 20, seed: int = 0,
              max_exact_pairs: int = MAX_EXACT_PAIRS) -> dict[str, Any]:
    """The statistics of `agreement.json` for one stage's answers."""
    slots = answers.slots
    answered = np.flatnonzero(slots["answered"].to_numpy())
    image = slots["image"].to_numpy()[answered]
    m = np.bincount(image, minlength=len(answers.images))
    pairable = m >= 2
    keep = answered[pairable[image]]
    unit = slots["image"].to_numpy()[keep]
    sets = answers.sets.take(keep)
    a, b = unit_pairs(unit)
    inter, la, lb = pair_stats(sets, a, b)
    pair_unit = unit[a]
    pairs_per_unit = np.bincount(pair_unit, minlength=len(answers.images))
    units = np.flatnonzero(pairs_per_unit)
    equal = (inter == la) & (la == lb)
    exact = np.bincount(pair_unit, weights=~equal, minlength=len(answers.images))[units] == 0
    mean_j = np.bincount(pair_unit, weights=jaccard(inter, la, lb), minlength=len(answers.images))[units] \
        / pairs_per_unit[units]
    alpha, method = krippendorff_alpha_sets(sets, unit, seed=seed, max_exact_pairs=max_exact_pairs)

    def number(x: float) -> float | None:
        return None if np.isnan(x) else round(float(x), 6)

    return {
        "units": int(len(units)), "values": int(len(keep)),
        "exact_match_rate": number(exact.mean()) if len(units) else None,
        "mean_jaccard": number(mean_j.mean()) if len(units) else None,
        "krippendorff_alpha_masi": number(alpha), "alpha_method": method,
        "min_label_units": min_units,
        "per_label_alpha": per_label_alpha(answers, pairable, min_units),
    }
