"""Accuracy against multi-labels (ReaL), shared by model selection and evaluation.

ReaL (Beyer et al., 2020; timm's `RealLabelsImagenet`): a top-k prediction is right when
any of its k classes is in the image's set of valid labels; images whose set is empty
are left out.
"""
from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np


def real_hits(predictions: np.ndarray, label_sets: Sequence[Collection[int]], k: int = 1) -> np.ndarray:
    """One bool per image with a non-empty label set: is any of the top-k predictions valid?

    `predictions` is (N, >=k) class indices in rank order, aligned with `label_sets`.
    """
    predictions = np.asarray(predictions)
    if predictions.ndim != 2 or predictions.shape[0] != len(label_sets):
        raise ValueError(f"predictions must be (N, k) with N = {len(label_sets)}, got {predictions.shape}")
    if predictions.shape[1] < k:
        raise ValueError(f"need at least {k} ranked predictions per image, got {predictions.shape[1]}")
    hits = [any(int(p) in labels for p in row[:k])
            for row, labels in zip(predictions, label_sets) if len(labels) > 0]
    return np.asarray(hits, dtype=bool)


def real_accuracy(predictions: np.ndarray, label_sets: Sequence[Collection[int]], k: int = 1) -> float:
    """ReaL top-k accuracy in percent (as timm reports it); NaN when no image has labels."""
    hits = real_hits(predictions, [set(map(int, s)) for s in label_sets], k)
    return float(hits.mean() * 100) if hits.size else float("nan")


def topk_accuracy(predictions: np.ndarray, labels: Sequence[int], k: int = 1) -> float:
    """Plain top-k accuracy in percent against one label per image."""
    predictions = np.asarray(predictions)[:, :k]
    labels = np.asarray(labels).reshape(-1, 1)
    return float((predictions == labels).any(axis=1).mean() * 100)
