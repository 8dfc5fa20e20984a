"""The proposals table (Parquet): one row per image, top-K classes, plus run metadata.

The single reader/writer of the format described in docs/formats.md, used by `propose`,
the page builder, and evaluation (which reads other models' predictions in the same form).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from multilabelfy.collector.clitools import UserError

METADATA_KEY = b"multilabelfy"
COLUMNS = ("key", "label", "classes", "probs", "label_rank", "label_prob", "label_added")


def schema():
    """The Arrow schema of a proposals table."""
    import pyarrow as pa

    return pa.schema([
        ("key", pa.string()), ("label", pa.int32()),
        ("classes", pa.list_(pa.int32())), ("probs", pa.list_(pa.float32())),
        ("label_rank", pa.int32()), ("label_prob", pa.float32()), ("label_added", pa.bool_()),
    ])


def to_arrow(rows: dict[str, list], metadata: dict[str, Any]):
    """Column lists -> an Arrow table with the schema and the run's metadata attached."""
    import pyarrow as pa

    table = pa.Table.from_pydict({name: rows[name] for name in COLUMNS}, schema=schema())
    return table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()})


def write_proposals(path: Path, rows: dict[str, list], metadata: dict[str, Any]) -> None:
    """Write a whole table from column lists, atomically."""
    write_table(path, to_arrow(rows, metadata), metadata)


def write_table(path: Path, table, metadata: dict[str, Any]) -> None:
    """Write an Arrow table with the run's metadata atomically (a crash leaves the old file or none).

    Takes Arrow directly so that merging 1.28 M rows never goes through Python lists.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    table = table.cast(schema()).replace_schema_metadata(
        {METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()})
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def read_table(path: Path):
    """A proposals file as an Arrow table (no pandas), for merging chunks."""
    import pyarrow.parquet as pq

    return pq.read_table(path)


def read_proposals(path: str | Path):
    """(DataFrame, metadata) of a proposals table; a clear error for a missing or foreign file."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise UserError(f"proposals file {str(path)!r} does not exist")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise UserError(f"proposals file {str(path)!r} is not a readable Parquet file: {exc}") from None
    missing = [c for c in ("key", "label", "classes", "probs") if c not in table.column_names]
    if missing:
        raise UserError(f"proposals file {str(path)!r} lacks column(s) {', '.join(missing)}")
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    metadata = json.loads(raw) if raw else {}
    return table.to_pandas(), metadata


def shown_classes(key: str, classes, label: int, label_added: bool) -> list[int]:
    """What a page shows for one row: the top K, plus the original label when it was added.

    An added label goes to a position drawn from the image key (stable across rebuilds), not
    to the end, where it would stand out as "the one that is not a proposal".
    """
    shown = [int(c) for c in classes]
    if label_added and label not in shown:
        digest = hashlib.sha256(f"added-label:{key}".encode()).digest()
        shown.insert(int.from_bytes(digest[:8], "big") % (len(shown) + 1), int(label))
    return shown
