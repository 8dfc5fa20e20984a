"""What analysis reads: the site manifest, the private assignments and image list, the store.

All formats are those of docs/formats.md (code: collector/formats.py). The store can
hold millions of records, so it is read column-wise with pyarrow's JSON-lines reader;
only when that reader refuses the file (a torn or damaged line) does it fall back to
`formats.read_store`, which sets bad lines aside and returns them, so they are reported
instead of silently dropped.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from multilabelfy.analysis.labelsets import LabelSets
from multilabelfy.collector import formats
from multilabelfy.collector.clitools import UserError

if TYPE_CHECKING:
    import pandas as pd

ASSIGNMENTS_FILE = "assignments.json"
IMAGES_FILE = "images.csv"

#: Record fields analysis uses (the rest, e.g. client_time, stays in the store).
STORE_COLUMNS = ("id", "stage", "batch", "image", "annotator", "labels", "none", "reason", "comment",
                 "elapsed_ms")


@dataclass
class Store:
    """Every valid record of the store, column-wise, in file order.

    `table` holds the record fields (Arrow), `labels[i]` the label set of row i.
    `bad_lines` are lines that are not JSON objects (torn writes), `invalid` records that
    lack a required field or have a wrong type. Which record counts (the latest per
    stage, image and annotator) is decided per stage by `matches`, or for all at once by
    `latest` (formats.latest_records, vectorised).
    """
    table: Any
    labels: LabelSets
    total_records: int
    bad_lines: list[formats.BadLine] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    _codes: dict[str, tuple[np.ndarray, Any]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return self.table.num_rows

    def codes(self, name: str) -> tuple[np.ndarray, Any]:
        """(code per record, distinct values) of a string column, computed once."""
        if name not in self._codes:
            import pyarrow as pa
            import pyarrow.compute as pc

            column = self.table[name].combine_chunks() if self.table.num_rows else pa.array([], pa.string())
            encoded = pc.dictionary_encode(column)
            self._codes[name] = (encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64),
                                 encoded.dictionary)
        return self._codes[name]

    def stage_mask(self, stage: str) -> np.ndarray:
        codes, values = self.codes("stage")
        found = index_of([stage], values)[0] if len(values) else -1
        return codes == found if found >= 0 else np.zeros(len(self), dtype=bool)

    def matches(self, stage: str, keys, people) -> tuple[np.ndarray, np.ndarray]:
        """For every record: its position in `keys` and in `people` when it is of `stage` (else -1)."""
        image, image_values = self.codes("image")
        who, who_values = self.codes("annotator")
        mask = self.stage_mask(stage)
        page = np.where(mask, index_of(image_values, keys)[image] if len(image) else image, -1)
        person = np.where(mask, index_of(who_values, people)[who] if len(who) else who, -1)
        return page, person

    def latest(self) -> tuple["pd.DataFrame", LabelSets]:
        """The record that counts per (stage, image, annotator), in file order (for reports and tests)."""
        key = np.zeros(len(self), dtype=np.int64)
        for name in ("stage", "annotator", "image"):
            codes, values = self.codes(name)
            key = key * max(len(values), 1) + codes
        order = np.argsort(key, kind="stable")
        last = np.ones(len(order), dtype=bool)
        last[:-1] = key[order][1:] != key[order][:-1]
        rows = np.sort(order[last])
        return self.table.take(rows).to_pandas(), self.labels.take(rows)

    def problems(self) -> list[str]:
        """One line per damaged line or invalid record, for the command's summary."""
        lines = [f"line {b.number} (byte {b.offset}) is not a JSON object, set aside: {b.text[:80]!r}"
                 for b in self.bad_lines]
        return lines + self.invalid


@dataclass
class StagePages:
    """One stage of the manifest, column-wise: page i shows image `keys[i]` in batch `batch[i]`."""
    keys: np.ndarray          # str (object array), manifest order: batch by batch, pages in order
    batch: np.ndarray         # int64
    shown: LabelSets          # class indices the page shows, page order
    prechecked: LabelSets     # refine: ticked when the page opens

    def __len__(self) -> int:
        return len(self.keys)

    def batches(self) -> dict[int, list[str]]:
        """Batch -> its image keys in page order."""
        out: dict[int, list[str]] = {}
        for key, batch in zip(self.keys.tolist(), self.batch.tolist()):
            out.setdefault(batch, []).append(key)
        return out


@dataclass
class Inputs:
    """Everything the analysis commands read, checked."""
    site_dir: Path
    private_dir: Path
    num_classes: int
    pages: dict[str, StagePages]
    assignments: dict[str, dict[int, list[str]]]
    images: "pd.DataFrame"   # key, label: every image of the site, dataset order
    store: Store


def load_inputs(site_dir: Path, private_dir: Path, store_path: Path) -> Inputs:
    """Read and check the manifest, assignments, images.csv and the store."""
    site_dir, private_dir = Path(site_dir), Path(private_dir)
    num_classes, pages = read_pages(site_dir)
    return Inputs(site_dir=site_dir, private_dir=private_dir, num_classes=num_classes, pages=pages,
                  assignments=read_assignments(private_dir), images=read_images(private_dir),
                  store=read_store(store_path))


def read_manifest(site_dir: Path) -> formats.Manifest:
    path = Path(site_dir) / formats.MANIFEST_FILE
    if not path.is_file():
        raise UserError(f"{path} does not exist: is --site the folder `multilabelfy-build pages` wrote?")
    try:
        return formats.load_manifest(site_dir)
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is not a valid site manifest: {exc}") from None


def read_pages(site_dir: Path) -> tuple[int, dict[str, StagePages]]:
    """(num_classes, stage -> pages) of `SITE_DIR/manifest.json`.

    At ImageNet-train scale the manifest is close to 1 GB of JSON; Python's json module
    would turn it into ~30 million objects (several GB, tens of seconds). Arrow's JSON
    reader parses it straight into columns; any file it does not take (or that breaks an
    assumption below) goes through `formats.load_manifest`, the reference reader.
    """
    path = Path(site_dir) / formats.MANIFEST_FILE
    if not path.is_file():
        raise UserError(f"{path} does not exist: is --site the folder `multilabelfy-build pages` wrote?")
    try:
        return _read_pages_arrow(path)
    except Exception:  # noqa: BLE001 - anything unusual: the reference reader decides (and explains)
        manifest = read_manifest(site_dir)
        return manifest.num_classes, {stage: _pages_from_manifest(batches) for stage, batches in manifest.stages.items()}


def _pages_from_manifest(batches: dict[int, list[formats.ManifestImage]]) -> StagePages:
    pages = [(b, p) for b, ps in sorted(batches.items()) for p in ps]
    return StagePages(keys=np.array([p.key for _, p in pages], dtype=object),
                      batch=np.array([b for b, _ in pages], dtype=np.int64),
                      shown=LabelSets.from_lists([p.shown for _, p in pages]),
                      prechecked=LabelSets.from_lists([p.prechecked for _, p in pages]))


def _read_pages_arrow(path: Path) -> tuple[int, dict[str, StagePages]]:
    import pyarrow as pa
    import pyarrow.json as pj

    table = pj.read_json(path, read_options=pj.ReadOptions(block_size=path.stat().st_size + 1),
                         parse_options=pj.ParseOptions(newlines_in_values=True))
    if table.num_rows != 1 or table.column("version")[0].as_py() != 1:
        raise ValueError("not a version-1 manifest")
    num_classes = int(table.column("num_classes")[0].as_py())
    stages = table.column("stages").combine_chunks()
    out: dict[str, StagePages] = {}
    for index in range(stages.type.num_fields):
        name = stages.type.field(index).name
        if name not in formats.STAGES:
            raise ValueError(f"unknown stage {name!r}")
        batches = stages.field(index).field("batches").flatten()
        images = batches.field("images")
        flat = images.flatten()
        keys = flat.field("key")
        if keys.null_count or not pa.types.is_string(keys.type):
            raise ValueError("a page without a key")
        names = {flat.type.field(i).name for i in range(flat.type.num_fields)}
        out[name] = StagePages(
            keys=keys.to_numpy(zero_copy_only=False),
            batch=np.repeat(batches.field("batch").to_numpy(zero_copy_only=False).astype(np.int64),
                            images.value_lengths().to_numpy(zero_copy_only=False).astype(np.int64)),
            shown=LabelSets.from_arrow(flat.field("shown")),
            prechecked=LabelSets.from_arrow(flat.field("prechecked")) if "prechecked" in names
            else LabelSets.empty(len(flat)))
    return num_classes, out


def read_assignments(private_dir: Path) -> dict[str, dict[int, list[str]]]:
    """`PRIVATE_DIR/assignments.json` as stage -> batch -> annotators."""
    path = Path(private_dir) / ASSIGNMENTS_FILE
    if not path.is_file():
        raise UserError(f"{path} does not exist: is --private the folder `multilabelfy-build pages` wrote?")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {stage: {int(batch): [str(a) for a in names] for batch, names in batches.items()}
                for stage, batches in data.items()}
    except (ValueError, AttributeError, TypeError) as exc:
        raise UserError(f"{path} is not a valid assignments file ({{stage: {{batch: [annotators]}}}}): {exc}") from None


def read_images(private_dir: Path) -> "pd.DataFrame":
    """`PRIVATE_DIR/images.csv` (key,label) in dataset order, keys unique."""
    import pandas as pd

    path = Path(private_dir) / IMAGES_FILE
    if not path.is_file():
        raise UserError(f"{path} does not exist: is --private the folder `multilabelfy-build pages` wrote?")
    try:
        frame = pd.read_csv(path, dtype={"key": str}, keep_default_na=False, engine="pyarrow")
    except Exception as exc:  # pandas/pyarrow raise several types for damaged CSV
        raise UserError(f"{path} cannot be read as CSV: {exc}") from None
    if list(frame.columns[:2]) != ["key", "label"]:
        raise UserError(f"{path} must have columns key,label; found {','.join(map(str, frame.columns))}")
    if not pd.api.types.is_integer_dtype(frame["label"]):
        raise UserError(f"{path}: column label must hold class indices (whole numbers)")
    dup = first_duplicate(frame["key"])
    if dup is not None:
        raise UserError(f"{path}: image key {dup!r} appears more than once")
    return frame[["key", "label"]].reset_index(drop=True)


def as_arrow_strings(values):
    """A pyarrow string array from a numpy/pandas/pyarrow column (zero-copy where possible)."""
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values if isinstance(values, pa.Array) else pa.array(values, type=pa.string())


def index_of(needles, haystack) -> np.ndarray:
    """For each needle, its position in `haystack` (-1 when absent), by Arrow's C++ hash table
    (7x faster than a pandas object Index at a million keys)."""
    import pyarrow.compute as pc

    found = pc.index_in(as_arrow_strings(needles), value_set=as_arrow_strings(haystack))
    return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def first_duplicate(values) -> str | None:
    """The first value that occurs twice, or None when all are distinct."""
    import pyarrow.compute as pc

    array = as_arrow_strings(values)
    if pc.count_distinct(array).as_py() == len(array):
        return None
    position = index_of(array, array)
    repeated = np.flatnonzero(position != np.arange(len(array)))
    return array[int(repeated[0])].as_py()


def _store_schema():
    import pyarrow as pa

    return pa.schema([("id", pa.string()), ("stage", pa.string()), ("batch", pa.int64()),
                      ("image", pa.string()), ("annotator", pa.string()), ("labels", pa.list_(pa.int64())),
                      ("none", pa.bool_()), ("reason", pa.string()), ("comment", pa.string()),
                      ("elapsed_ms", pa.float64())])


def read_store(path: Path) -> Store:
    """The store's records that count, column-wise, with damaged lines reported."""
    import pyarrow as pa
    import pyarrow.json as pj

    path = Path(path)
    if not path.is_file():
        raise UserError(f"store {str(path)!r} does not exist: pass the collector's --store file")
    bad: list[formats.BadLine] = []
    invalid: list[str] = []
    if path.stat().st_size == 0:
        table = _store_schema().empty_table()
    else:
        try:
            table = pj.read_json(path, parse_options=pj.ParseOptions(
                explicit_schema=_store_schema(), unexpected_field_behavior="ignore"),
                read_options=pj.ReadOptions(block_size=16 << 20))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            table, bad, invalid = _read_store_slowly(path)
    return _checked(table, bad, invalid, path)


def _read_store_slowly(path: Path):
    """The damaged-file path: `formats.read_store` splits good records from bad lines."""
    import pyarrow as pa

    records, bad = formats.read_store(path)
    schema = _store_schema()
    good: list[dict[str, Any]] = []
    invalid: list[str] = []
    for number, record in enumerate(records, start=1):
        problem = _record_problem(record)
        if problem:
            invalid.append(f"record {number} ({record.get('id', 'no id')!r}) set aside: {problem}")
        else:
            good.append({name: record.get(name) for name in schema.names})
    return pa.Table.from_pylist(good, schema=schema), bad, invalid


def _record_problem(record: dict[str, Any]) -> str | None:
    for name in ("stage", "image", "annotator"):
        if not isinstance(record.get(name), str):
            return f"field {name!r} is missing or not a string"
    labels = record.get("labels")
    if not isinstance(labels, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in labels):
        return "field 'labels' is missing or not a list of class indices"
    for name, kind in (("batch", int), ("none", bool), ("reason", str), ("comment", str), ("elapsed_ms", (int, float))):
        value = record.get(name)
        if value is not None and not isinstance(value, kind):
            return f"field {name!r} has the wrong type"
    return None


def _checked(table, bad: list, invalid: list[str], path: Path) -> Store:
    """The store without records that lack a required field (each reported)."""
    import pyarrow.compute as pc

    required = pc.and_(pc.and_(pc.is_valid(table["stage"]), pc.is_valid(table["image"])),
                       pc.and_(pc.is_valid(table["annotator"]), pc.is_valid(table["labels"])))
    missing = np.flatnonzero(~required.to_numpy(zero_copy_only=False))
    for row in missing[:20]:
        invalid.append(f"record {row + 1} of {path} set aside: it lacks stage, image, annotator or labels")
    if len(missing) > 20:
        invalid.append(f"... and {len(missing) - 20} more records without stage, image, annotator or labels")
    total = table.num_rows
    if len(missing):
        table = table.filter(required)
    labels = LabelSets.from_arrow(table["labels"])
    return Store(table=table.drop_columns(["labels"]), labels=labels, total_records=total, bad_lines=bad,
                 invalid=invalid)


def write_csv(frame: "pd.DataFrame", path: Path) -> None:
    """Write a table as CSV atomically with Arrow's writer (fast at millions of rows)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.cast(pa.schema([pa.field(f.name, pa.string()) if pa.types.is_dictionary(f.type) else f
                                  for f in table.schema]))
    pcsv.write_csv(table, tmp)
    tmp.replace(path)


# --- command-line plumbing shared by disagreement, refine and finalize -----------------------

def add_input_options(parser) -> None:
    """--site, --private, --store: where the three analysis commands read from."""
    from multilabelfy.collector.clitools import existing_path

    parser.add_argument("--site", metavar="SITE_DIR", type=existing_path("site folder"), required=True,
                        help="the annotation site (its manifest.json says what each page showed)")
    parser.add_argument("--private", metavar="PRIVATE_DIR", type=existing_path("private folder"), required=True,
                        help="the private folder of the build (assignments.json, images.csv, links, tokens)")
    parser.add_argument("--store", metavar="FILE", type=Path, required=True,
                        help="the collector's submissions file (JSON lines)")


def load_from_args(args, out=None) -> Inputs:
    """Inputs from the shared options; damaged lines and invalid records are reported on stderr."""
    import sys

    inputs = load_inputs(args.site, args.private, args.store)
    store = inputs.store
    problems = store.problems()
    if problems:
        print(f"warning: {args.store}: {len(store.bad_lines)} damaged line(s) and {len(store.invalid)} invalid "
              f"record(s) set aside (the rest is used):", file=out or sys.stderr)
        for line in problems[:20]:
            print(f"  {line}", file=out or sys.stderr)
    return inputs
