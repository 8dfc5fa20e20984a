"""Many small label sets at once, as flat numpy arrays (CSR: offsets + values).

Analysis handles millions of answers; a Python set per answer would cost about a
kilobyte each and seconds of interpreter time. Here every operation the analysis needs
(take, canonical order, pairwise intersection sizes, membership, votes) is a handful of
numpy calls over all sets together.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LabelSets:
    """`n` sets of class indices: set i is `values[offsets[i]:offsets[i + 1]]`."""
    offsets: np.ndarray  # int64, length n + 1, offsets[0] == 0
    values: np.ndarray   # int64

    # --- construction ---------------------------------------------------------------

    @classmethod
    def from_lists(cls, lists: Iterable[Sequence[int]]) -> "LabelSets":
        lists = list(lists)
        lengths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
        offsets = np.zeros(len(lists) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = np.fromiter((int(v) for x in lists for v in x), dtype=np.int64, count=int(offsets[-1]))
        return cls(offsets, values)

    @classmethod
    def from_arrow(cls, array) -> "LabelSets":
        """From a pyarrow list array (a null list is an empty set)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks() if array.num_chunks else pa.array([], type=array.type)
        array = pc.fill_null(array, pa.scalar([], type=array.type)) if array.null_count else array
        lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False).astype(np.int64)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = pc.list_flatten(array).to_numpy(zero_copy_only=False).astype(np.int64)
        return cls(offsets, values)

    @classmethod
    def empty(cls, n: int) -> "LabelSets":
        return cls(np.zeros(n + 1, dtype=np.int64), np.zeros(0, dtype=np.int64))

    # --- basic views ------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row_ids(self) -> np.ndarray:
        """For each value, the index of the set it belongs to."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths)

    def positions(self, rows: np.ndarray, missing: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(positions into `values`, owner index into `rows`) for the elements of sets `rows`.

        Rows flagged in `missing` contribute nothing (they stand for empty sets).
        """
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows] if len(rows) else np.zeros(0, dtype=np.int64)
        if missing is not None:
            lengths = np.where(missing, 0, lengths)
        owner = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
        ends = np.cumsum(lengths)
        total = int(ends[-1]) if len(ends) else 0
        pos = (np.arange(total, dtype=np.int64) - np.repeat(ends - lengths, lengths)
               + np.repeat(self.offsets[rows] if len(rows) else rows, lengths))
        return pos, owner

    def take(self, rows: np.ndarray) -> "LabelSets":
        """The sets `rows`, in that order; a row of -1 gives an empty set."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(self):
            if (rows >= 0).any():
                raise IndexError("take from an empty LabelSets")
            return LabelSets.empty(len(rows))
        missing = rows < 0
        pos, owner = self.positions(np.where(missing, 0, rows), missing)
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(np.bincount(owner, minlength=len(rows)), out=offsets[1:])
        return LabelSets(offsets, self.values[pos])

    def canonical(self) -> "LabelSets":
        """Each set sorted ascending without repeats (so equal sets have equal slices)."""
        if not len(self.values):
            return self
        rows = self.row_ids()
        width = int(self.values.max()) + 1
        keys, _ = unique_counts(rows * width + self.values)
        rows, values = np.divmod(keys, width)
        offsets = np.zeros(len(self) + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=len(self)), out=offsets[1:])
        return LabelSets(offsets, values)

    def contains(self, labels: np.ndarray) -> np.ndarray:
        """For each set i, is `labels[i]` in it?"""
        hits = self.values == np.repeat(np.asarray(labels, dtype=np.int64), self.lengths)
        return np.bincount(self.row_ids()[hits], minlength=len(self)) > 0

    def to_lists(self) -> list[list[int]]:
        values = self.values.tolist()
        bounds = self.offsets.tolist()
        return [values[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def to_arrow(self):
        """A pyarrow list<int64> array of the sets."""
        import pyarrow as pa

        return pa.ListArray.from_arrays(pa.array(self.offsets), pa.array(self.values))

    def join(self, sep: str = " ", prefix: str = "", suffix: str = "", quote: str = ""):
        """Each set as text, as a pyarrow string array: `prefix + quote a quote sep ... + suffix`.

        E.g. the CSV form "3 17 254", or JSON with prefix "[" and suffix "]". Done in
        Arrow's C++ kernels, since at ImageNet scale this is millions of strings.
        """
        import pyarrow as pa
        import pyarrow.compute as pc

        words = pa.array(self.values).cast(pa.string())
        if quote:
            words = pc.binary_join_element_wise(quote, words, quote, "")
        joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(self.offsets), words), sep)
        if prefix or suffix:
            joined = pc.binary_join_element_wise(prefix, joined, suffix, "")
        return joined

    def to_strings(self, sep: str = " ") -> np.ndarray:
        """Each set as text, e.g. "3 17 254" (the CSV form), as a numpy object array."""
        return self.join(sep).to_numpy(zero_copy_only=False)

    def set_ids(self) -> np.ndarray:
        """One integer per set, equal exactly when the (canonical) sets are equal.

        Sets of up to `per` labels are packed exactly into one int64 (mixed radix, digit
        0 for "no label"); the rare longer ones are told apart by their text.
        """
        import pandas as pd

        n, lengths = len(self), self.lengths
        base = int(self.values.max()) + 2 if len(self.values) else 2
        per = max(1, int(62 // np.log2(base)))
        code = np.zeros(n, dtype=np.int64)
        starts = self.offsets[:-1]
        short = lengths <= per
        for j in range(min(per, int(lengths.max()) if n else 0)):
            rows = np.flatnonzero(short & (lengths > j))
            code[rows] += (self.values[starts[rows] + j] + 1) * base ** j
        long_rows = np.flatnonzero(~short)
        if len(long_rows):
            ids, _ = pd.factorize(self.take(long_rows).to_strings())
            code[long_rows] = -1 - ids.astype(np.int64)
        return pd.factorize(code)[0].astype(np.int64)


def unique_counts(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct keys, how often each occurs): np.unique by sorting, several times faster
    on millions of int64 keys than numpy 2's hash-based np.unique, and free when already sorted."""
    keys = np.asarray(keys)
    if len(keys) > 1 and not np.all(keys[1:] >= keys[:-1]):
        keys = np.sort(keys)
    if not len(keys):
        return keys, np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    return keys[starts], np.diff(np.append(starts, len(keys)))


def concat(parts: Sequence[LabelSets]) -> LabelSets:
    """One LabelSets holding the sets of all `parts`, in order."""
    if not parts:
        return LabelSets.empty(0)
    lengths = np.concatenate([p.lengths for p in parts])
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return LabelSets(offsets, np.concatenate([p.values for p in parts]))


def intersection_sizes(sets: LabelSets, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|sets[a[k]] ∩ sets[b[k]]| for every k (sets must be canonical: no repeats)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if not len(a) or not len(sets.values):
        return np.zeros(len(a), dtype=np.int64)
    width = int(sets.values.max()) + 1
    pos_a, own_a = sets.positions(a)
    pos_b, own_b = sets.positions(b)
    keys = np.concatenate([own_a * width + sets.values[pos_a], own_b * width + sets.values[pos_b]])
    keys.sort()
    dup = keys[1:][keys[1:] == keys[:-1]]
    return np.bincount(dup // width, minlength=len(a)).astype(np.int64)


def pair_stats(sets: LabelSets, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(|A ∩ B|, |A|, |B|) for the pairs (sets[a[k]], sets[b[k]])."""
    lengths = sets.lengths
    return intersection_sizes(sets, a, b), lengths[np.asarray(a, dtype=np.int64)], lengths[np.asarray(b, dtype=np.int64)]


def jaccard(inter: np.ndarray, la: np.ndarray, lb: np.ndarray) -> np.ndarray:
    """|A ∩ B| / |A ∪ B|, with two empty sets counting as identical (1.0)."""
    union = la + lb - inter
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def masi_distance(inter: np.ndarray, la: np.ndarray, lb: np.ndarray) -> np.ndarray:
    """Passonneau's MASI distance 1 - J·M (M: 1 equal, 0.67 subset, 0.33 overlap, 0 disjoint).

    The same weights as NLTK's `masi_distance`; two empty sets are equal (distance 0).
    """
    equal = (inter == la) & (inter == lb)
    subset = (inter == np.minimum(la, lb)) & (inter > 0)
    monotonicity = np.select([equal, subset, inter > 0], [1.0, 0.67, 0.33], default=0.0)
    return 1.0 - jaccard(inter, la, lb) * monotonicity


def equal_sets(sets: LabelSets, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Is sets[a[k]] == sets[b[k]]? (canonical sets)"""
    inter, la, lb = pair_stats(sets, a, b)
    return (inter == la) & (la == lb)
