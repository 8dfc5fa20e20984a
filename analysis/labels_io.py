"""Final multi-labels in, whoever made them: our finalize output, the paper's release, ReaL.

Evaluation and the report work on one in-memory form, `LabelTable`, so that a
researcher can study published labels exactly like their own. Accepted inputs:

- a LABELS_DIR written by `multilabelfy-analyze finalize` (docs/formats.md):
  `labels.csv` is read (it has keys, original labels, statuses and empty-set reasons);
  without it, `refined_labels.json`, then `real_labels.json`;
- the paper's released form, a JSON object `{file name: ["index", ...]}`;
- ReaL's form, a JSON list (dataset order) of lists of class indices. It carries no
  keys: they come from `--original` when that is a CSV `key,label` in dataset order
  (like PRIVATE_DIR/images.csv), else ImageNet-val file names
  `ILSVRC2012_val_00000001.JPEG`, ... as ReaL itself and timm's `RealLabelsImagenet` use.

`--original FILE` adds the dataset's own labels: JSON `{file name or key: index}` or a
CSV with columns `key,label`. Keys are matched by full key, else by file name (when that
file name is unique), so `17/abc.jpeg` in a predictions file finds `abc.jpeg` here.
"""
from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from multilabelfy.collector.clitools import UserError
from multilabelfy.collector.formats import NONE_REASONS

LABELS_CSV = "labels.csv"
REAL_JSON = "real_labels.json"
RELEASED_JSON = "refined_labels.json"
CSV_COLUMNS = ("key", "original_label", "labels", "status", "empty_reason")
WAITING = "incomplete"  # finalize --allow-incomplete: still waiting, written with an empty set
MISSING = -1  # an unknown original label, or a key without a match


def imagenet_val_name(index: int) -> str:
    """ReaL's file name for the index-th (0-based) image of ImageNet val."""
    return f"ILSVRC2012_val_{index + 1:08d}.JPEG"


def file_name(key: str) -> str:
    """The file-name part of a key (keys use `/` separators on every system)."""
    return PurePosixPath(key).name


class KeyMatcher:
    """Finds a key's row by full key first, else by its file name when that is unambiguous.

    Needed because the paper's release and ReaL name images by file name only, while
    our datasets key them by path (`17/abc.jpeg`).
    """

    def __init__(self, keys: Sequence[str]):
        self.full = {k: i for i, k in enumerate(keys)}
        names = Counter(file_name(k) for k in keys)
        self.by_name = {file_name(k): i for i, k in enumerate(keys) if names[file_name(k)] == 1}

    def find(self, key: str) -> int:
        """The row of `key`, or MISSING."""
        row = self.full.get(key)
        if row is None:
            row = self.by_name.get(file_name(key), MISSING)
        return row

    def align(self, keys: Iterable[str]) -> np.ndarray:
        """Rows for many keys at once (MISSING where there is no match)."""
        return np.fromiter((self.find(k) for k in keys), dtype=np.int64)


@dataclass
class LabelTable:
    """Final label sets in dataset order, with what else the source knew about each image."""
    keys: list[str]
    labels: list[tuple[int, ...]]
    original: np.ndarray               # int64, MISSING where unknown
    status: list[str] | None = None     # finalize's status per image, when known
    empty_reason: list[str] | None = None
    source: str = ""
    notes: list[str] = field(default_factory=list)
    waiting: int = 0                    # `incomplete` rows of labels.csv, left out of every number
    _matcher: KeyMatcher | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def matcher(self) -> KeyMatcher:
        if self._matcher is None:
            self._matcher = KeyMatcher(self.keys)
        return self._matcher

    @property
    def counts(self) -> np.ndarray:
        """Number of labels per image."""
        return np.fromiter((len(s) for s in self.labels), dtype=np.int64, count=len(self.labels))

    @property
    def has_original(self) -> bool:
        return bool((self.original != MISSING).any())

    def original_in_set(self) -> np.ndarray:
        """Per image with a known original label: is that label among the final ones?"""
        known = self.original != MISSING
        return np.array([int(o) in s for o, s, k in zip(self.original, self.labels, known) if k], dtype=bool)


# --- reading ------------------------------------------------------------------------------

def load_labels(path: str | Path, original: str | Path | None = None) -> LabelTable:
    """Read labels from a LABELS_DIR or one JSON file, plus optional original labels."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"labels {str(path)!r} do not exist")
    original_rows = _read_original(Path(original)) if original is not None else None
    if path.is_dir():
        table = _read_labels_dir(path, original_rows)
    else:
        table = _read_labels_json(path, original_rows)
    if original_rows is not None:
        _attach_original(table, original_rows, Path(original))
    if not len(table):
        raise UserError(f"labels {str(path)!r} hold no images")
    return table


def _read_labels_dir(folder: Path, original_rows: list[tuple[str, int]] | None) -> LabelTable:
    if (folder / LABELS_CSV).is_file():
        return read_labels_csv(folder / LABELS_CSV)
    for name in (RELEASED_JSON, REAL_JSON):
        if (folder / name).is_file():
            table = _read_labels_json(folder / name, original_rows)
            table.notes.append(f"{LABELS_CSV} is missing in {folder}: statuses and empty-set reasons are unknown")
            return table
    raise UserError(f"labels folder {str(folder)!r} has none of {LABELS_CSV}, {RELEASED_JSON}, {REAL_JSON}")


def read_labels_csv(path: Path) -> LabelTable:
    """finalize's `labels.csv`: key,original_label,labels,status,empty_reason.

    Rows with status `incomplete` (images still waiting, written by `finalize
    --allow-incomplete` with an empty set) are left out: their empty set is not a finding.
    """
    keys: list[str] = []
    labels: list[tuple[int, ...]] = []
    originals: list[int] = []
    status: list[str] = []
    reasons: list[str] = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("key", "labels") if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path} lacks column(s) {', '.join(missing)}")
        waiting = 0
        for number, row in enumerate(reader, start=2):
            where = f"{path} line {number}"
            if (row.get("status") or "").strip() == WAITING:
                waiting += 1
                continue
            keys.append(row["key"])
            labels.append(_parse_indices((row["labels"] or "").split(), where))
            text = (row.get("original_label") or "").strip()
            originals.append(_parse_index(text, where) if text else MISSING)
            status.append((row.get("status") or "").strip())
            reasons.append((row.get("empty_reason") or "").strip())
    _check_unique(keys, path)
    table = LabelTable(keys, labels, np.asarray(originals, dtype=np.int64), status, reasons, source=str(path),
                       waiting=waiting)
    if waiting:
        table.notes.append(f"{waiting} image(s) still waiting for annotation (status {WAITING}) are left out")
    return table


def _read_labels_json(path: Path, original_rows: list[tuple[str, int]] | None) -> LabelTable:
    data = _load_json(path)
    if isinstance(data, dict):  # the paper's release: {file name: ["index", ...]}
        keys, labels = [], []
        for key, value in data.items():
            if not isinstance(value, list):
                raise UserError(f"{path}: the labels of {key!r} must be a list of class indices")
            keys.append(str(key))
            labels.append(_parse_indices(value, f"{path} image {key!r}"))
        return LabelTable(keys, labels, np.full(len(keys), MISSING, dtype=np.int64), source=str(path))
    if isinstance(data, list):  # ReaL: a list of label lists in dataset order
        labels = []
        for i, value in enumerate(data):
            if not isinstance(value, list):
                raise UserError(f"{path}: entry {i} must be a list of class indices")
            labels.append(_parse_indices(value, f"{path} entry {i}"))
        table = LabelTable(_positional_keys(path, len(labels), original_rows), labels,
                           np.full(len(labels), MISSING, dtype=np.int64), source=str(path))
        return table
    raise UserError(f"{path} is neither a JSON object {{file name: [labels]}} nor a JSON list of label lists")


def _positional_keys(path: Path, n: int, original_rows: list[tuple[str, int]] | None) -> list[str]:
    """Keys for ReaL's list form: from an ordered `key,label` CSV, else ImageNet-val names."""
    if original_rows is not None and getattr(original_rows, "ordered", False):
        if len(original_rows) != n:
            raise UserError(f"{path} has {n} entries but the original labels have {len(original_rows)} rows; "
                            "a list of label lists is matched to images by position")
        return [k for k, _ in original_rows]
    return [imagenet_val_name(i) for i in range(n)]


class _Rows(list):
    """Original labels as (key, index) rows; `ordered` says their order is dataset order."""
    ordered = False


def _read_original(path: Path) -> _Rows:
    """`{file name or key: index}` JSON or a `key,label` CSV."""
    if not path.is_file():
        raise UserError(f"original labels {str(path)!r} do not exist")
    rows = _Rows()
    if path.suffix.lower() == ".csv":
        rows.ordered = True
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not {"key", "label"} <= set(reader.fieldnames or []):
                raise UserError(f"original labels {path} must have columns key,label")
            for number, row in enumerate(reader, start=2):
                rows.append((row["key"], _parse_index(row["label"], f"{path} line {number}")))
        return rows
    data = _load_json(path)
    if not isinstance(data, dict):
        raise UserError(f"original labels {path} must be a JSON object {{file name: class index}}")
    for key, value in data.items():
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        rows.append((str(key), _parse_index(value, f"{path} image {key!r}")))
    return rows


def _attach_original(table: LabelTable, rows: list[tuple[str, int]], path: Path) -> None:
    """Put the original labels beside the final ones, matching keys by key or file name."""
    matcher = KeyMatcher([k for k, _ in rows])
    values = np.asarray([v for _, v in rows], dtype=np.int64)
    found = matcher.align(table.keys)
    if not (found != MISSING).any():
        raise UserError(f"no image of the labels is in the original labels {path} (compared by key and file name)")
    original = np.where(found != MISSING, values[np.maximum(found, 0)], MISSING)
    known = table.original != MISSING
    clash = known & (original != MISSING) & (original != table.original)
    if clash.any():
        first = table.keys[int(np.flatnonzero(clash)[0])]
        raise UserError(f"original labels {path} disagree with the labels' own original label for "
                        f"{int(clash.sum())} image(s), e.g. {first!r}")
    table.original = np.where(known, table.original, original)
    lacking = int((table.original == MISSING).sum())
    if lacking:
        table.notes.append(f"{lacking} image(s) have no original label in {path}")


# --- small parsers ----------------------------------------------------------------------

def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not readable JSON: {exc}") from None


def _parse_index(value, where: str) -> int:
    try:
        index = int(value)
        if isinstance(value, float) and value != index:
            raise ValueError
    except (TypeError, ValueError):
        raise UserError(f"{where}: {value!r} is not a class index") from None
    if index < 0:
        raise UserError(f"{where}: class index {index} is negative")
    return index


def _parse_indices(values: Iterable, where: str) -> tuple[int, ...]:
    out = tuple(_parse_index(v, where) for v in values)
    if len(set(out)) != len(out):
        out = tuple(dict.fromkeys(out))  # a repeated label counts once
    return out


def _check_unique(keys: list[str], path: Path) -> None:
    if len(set(keys)) != len(keys):
        dup = next(k for k, c in Counter(keys).items() if c > 1)
        raise UserError(f"{path} lists image {dup!r} more than once")


def reason_text(reason: str) -> str:
    """A reason key as people read it (the paper's Section 4.4 categories)."""
    if not reason:
        return "reason not recorded"
    return NONE_REASONS.get(reason, reason)
