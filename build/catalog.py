"""The class catalog: for each class index, its id, name, synonyms and definition.

ImageNet-1k comes from timm's `ImageNetInfo` (WordNet lemmas and definitions); any other
dataset brings a CSV or JSON catalog file. Annotation pages show these texts, and the
ImageFolder reader maps WordNet-ID folders to indices through the ids.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from multilabelfy.collector.clitools import UserError

IMAGENET = "imagenet-1k"
SYNONYM_SEPARATOR = ";"  # inside the CSV catalog's `synonyms` column
CSV_COLUMNS = ("index", "id", "name", "synonyms", "definition")


@dataclass(frozen=True)
class ClassInfo:
    index: int
    id: str
    name: str
    synonyms: tuple[str, ...] = ()
    definition: str = ""


class Catalog(Sequence[ClassInfo]):
    """Classes by index 0..N-1, with a lookup by id (e.g. WordNet ID)."""

    def __init__(self, classes: Sequence[ClassInfo], source: str = ""):
        self.classes = list(classes)
        self.source = source
        _validate(self.classes, source or "catalog")
        self._by_id = {c.id: c.index for c in self.classes}

    def __len__(self) -> int:
        return len(self.classes)

    def __getitem__(self, index):  # type: ignore[override]
        return self.classes[index]

    def __iter__(self) -> Iterator[ClassInfo]:
        return iter(self.classes)

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.classes]

    def index_of(self, class_id: str) -> int | None:
        """The index of a class id, or None when the catalog has no such class."""
        return self._by_id.get(class_id)


def _validate(classes: list[ClassInfo], where: str) -> None:
    if not classes:
        raise UserError(f"{where} has no classes")
    for position, info in enumerate(classes):
        if info.index != position:
            raise UserError(f"{where}: class indices must be 0..{len(classes) - 1} without gaps; "
                            f"expected index {position}, found {info.index}")
        if not info.name.strip():
            raise UserError(f"{where}: class {info.index} has an empty name")
        if not info.id.strip():
            raise UserError(f"{where}: class {info.index} has an empty id")
    seen: dict[str, int] = {}
    for info in classes:
        if info.id in seen:
            raise UserError(f"{where}: id {info.id!r} is used by classes {seen[info.id]} and {info.index}")
        seen[info.id] = info.index


def imagenet_catalog() -> Catalog:
    """ImageNet-1k from timm: first WordNet lemma as the name, the others as synonyms."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    classes = []
    for index, wnid in enumerate(info.label_names()):
        lemmas = info.label_name_to_description(wnid, detailed=False)
        detailed = info.label_name_to_description(wnid, detailed=True)
        definition = detailed[len(lemmas) + 2:] if detailed.startswith(lemmas + ": ") else ""
        names = [part.strip() for part in lemmas.split(", ") if part.strip()]
        classes.append(ClassInfo(index=index, id=wnid, name=names[0], synonyms=tuple(names[1:]),
                                 definition=definition))
    return Catalog(classes, source=IMAGENET)


def load_catalog(spec: str | Path | None) -> Catalog:
    """`imagenet-1k` (or None) for timm's ImageNet-1k; else a `.csv` or `.json` catalog file."""
    if spec is None or str(spec) == IMAGENET:
        return imagenet_catalog()
    path = Path(spec)
    if not path.is_file():
        raise UserError(f"catalog file {str(path)!r} does not exist (give a .csv/.json file or {IMAGENET!r})")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            rows = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(rows, dict):
                rows = rows.get("classes", rows)
            if not isinstance(rows, list):
                raise UserError(f"catalog {path}: expected a list of classes")
            classes = [_from_mapping(row, path, n) for n, row in enumerate(rows, start=1)]
        elif suffix == ".csv":
            with path.open(newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                missing = {"index", "name"} - set(reader.fieldnames or ())
                if missing:
                    raise UserError(f"catalog {path}: missing column(s) {', '.join(sorted(missing))}")
                classes = [_from_mapping(row, path, n) for n, row in enumerate(reader, start=2)]
        else:
            raise UserError(f"catalog {path}: use a .csv or .json file")
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
        raise UserError(f"catalog {path} cannot be read: {exc}") from None
    classes.sort(key=lambda c: c.index)
    return Catalog(classes, source=str(path))


def _from_mapping(row: object, path: Path, number: int) -> ClassInfo:
    if not isinstance(row, dict):
        raise UserError(f"catalog {path}, entry {number}: expected an object with index and name")
    try:
        index = int(str(row.get("index", "")).strip())
    except ValueError:
        raise UserError(f"catalog {path}, entry {number}: index {row.get('index')!r} is not a whole number") from None
    synonyms = row.get("synonyms") or ()
    if isinstance(synonyms, str):
        synonyms = [s.strip() for s in synonyms.split(SYNONYM_SEPARATOR) if s.strip()]
    name = str(row.get("name") or "").strip()
    class_id = str(row.get("id") or "").strip() or str(index)
    return ClassInfo(index=index, id=class_id, name=name, synonyms=tuple(str(s) for s in synonyms),
                     definition=str(row.get("definition") or "").strip())


def save_catalog(catalog: Catalog, path: Path) -> None:
    """Write a catalog as CSV or JSON (by suffix), in the form `load_catalog` reads."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        rows = [{"index": c.index, "id": c.id, "name": c.name, "synonyms": list(c.synonyms),
                 "definition": c.definition} for c in catalog]
        path.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    else:
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(CSV_COLUMNS)
            for c in catalog:
                writer.writerow([c.index, c.id, c.name, SYNONYM_SEPARATOR.join(c.synonyms), c.definition])
