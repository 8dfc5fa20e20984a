"""Dataset readers: which images there are, their keys and their original labels.

Three layouts, auto-detected:
- ImageNetV2: class folders named by index `0`..`N-1` (ordered numerically: `100` is class 100);
- ImageFolder: class folders named by class id (WordNet IDs for ImageNet train/val);
- a CSV manifest with columns `path,label` (paths relative to the CSV's folder or `--root`).

An image's key is its path relative to the dataset root with `/` separators; it names
the image in every later file. Images are decoded only when read (`load_image`), where a
corrupt or truncated file raises `BadImageError` naming it.
"""
from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from multilabelfy.collector.clitools import UserError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
LAYOUTS = ("auto", "imagenetv2", "imagefolder", "csv")


class BadImageError(UserError):
    """An image file that cannot be decoded (missing, corrupt, truncated, not an image)."""

    def __init__(self, key: str, path: Path, reason: str):
        super().__init__(f"image {str(path)!r} cannot be read: {reason}")
        self.key, self.path, self.reason = key, path, reason


@dataclass(frozen=True)
class Sample:
    key: str
    label: int


@dataclass
class Dataset:
    """Images in dataset order, each with its key and original label."""
    root: Path
    samples: list[Sample]
    layout: str
    num_classes: int
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (key, reason) set aside by --skip-bad

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def path(self, key: str) -> Path:
        return self.root / key

    @property
    def keys(self) -> list[str]:
        return [s.key for s in self.samples]

    def labels(self) -> dict[str, int]:
        return {s.key: s.label for s in self.samples}


def load_image(path: Path, key: str | None = None, draft_size: int | None = None):
    """Decode an image fully and return it as RGB; any failure names the file.

    With `draft_size`, a JPEG decodes at a reduced DCT scale (much faster for large photos)
    whose sides stay at least `draft_size`, so a model's resize never upsamples.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as image:
            if draft_size and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))
            image.load()  # decodes everything: a truncated file fails here, not later
            return image.convert("RGB")
    except FileNotFoundError:
        raise BadImageError(key or path.name, path, "file not found") from None
    except UnidentifiedImageError:
        raise BadImageError(key or path.name, path, "not an image file Pillow can identify") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadImageError(key or path.name, path, f"{exc} (corrupt or truncated?)") from None


def open_dataset(root: str | Path, layout: str = "auto", num_classes: int = 1000,
                 class_ids: list[str] | None = None, image_root: str | Path | None = None) -> Dataset:
    """Read a dataset's image list and labels (no image is decoded here).

    `class_ids` (the catalog's ids, index order) map ImageFolder folder names to indices;
    `image_root` is where a CSV manifest's paths start (default: the CSV's folder).
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise UserError(f"dataset {str(root)!r} does not exist")
    if layout not in LAYOUTS:
        raise UserError(f"unknown dataset layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if layout == "auto":
        layout = _detect_layout(root)
    if layout == "csv":
        return read_manifest(root, num_classes=num_classes, class_ids=class_ids, image_root=image_root)
    if not root.is_dir():
        raise UserError(f"dataset {str(root)!r} is not a folder (or give a .csv manifest)")
    if layout == "imagenetv2":
        return read_imagenetv2(root, num_classes=num_classes)
    if class_ids is None:
        raise UserError("an ImageFolder dataset needs the catalog's class ids to map folder names to labels")
    return read_imagefolder(root, class_ids=class_ids)


def _detect_layout(root: Path) -> str:
    if root.is_file():
        if root.suffix.lower() == ".csv":
            return "csv"
        raise UserError(f"dataset {str(root)!r} is a file but not a .csv manifest")
    folders = _class_folders(root)
    if not folders:
        raise UserError(f"dataset {str(root)!r} has no class folders (expected folders such as 0..999 or WordNet IDs)")
    return "imagenetv2" if all(f.name.isdigit() for f in folders) else "imagefolder"


def _class_folders(root: Path) -> list[Path]:
    return [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]


def _images_in(folder: Path, root: Path) -> list[str]:
    """Keys of the image files below `folder` (recursively), sorted by name."""
    keys = []
    # Links are followed only within the class folder: one pointing back up (or into another
    # class) would list images twice, under the wrong label, or loop.
    base = os.path.realpath(folder)
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen or not (real == base or real.startswith(base + os.sep)):
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                keys.append(PurePosixPath(Path(dirpath, name).relative_to(root).as_posix()).as_posix())
    return keys


def read_imagenetv2(root: Path, num_classes: int = 1000) -> Dataset:
    """Folders named by class index; ordered by number, never as strings."""
    indexed = []
    for folder in _class_folders(root):
        if not folder.name.isdigit():
            raise UserError(f"folder {str(folder)!r} is no class: ImageNetV2 layout wants folders named 0..{num_classes - 1}")
        index = int(folder.name)
        if index >= num_classes:
            raise UserError(f"folder {str(folder)!r}: class index {index} is out of range (the catalog has {num_classes} classes)")
        indexed.append((index, folder))
    samples = [Sample(key, index) for index, folder in sorted(indexed, key=lambda t: (t[0], t[1].name))
               for key in _images_in(folder, root)]
    return _finish(root, samples, "imagenetv2", num_classes)


def read_imagefolder(root: Path, class_ids: list[str]) -> Dataset:
    """Folders named by class id (WordNet ID for ImageNet); label = the id's catalog index."""
    index_of = {cid: i for i, cid in enumerate(class_ids)}
    indexed = []
    for folder in _class_folders(root):
        if folder.name not in index_of:
            raise UserError(f"folder {str(folder)!r} is no class: {folder.name!r} is not an id in the catalog")
        indexed.append((index_of[folder.name], folder))
    samples = [Sample(key, index) for index, folder in sorted(indexed, key=lambda t: t[0])
               for key in _images_in(folder, root)]
    return _finish(root, samples, "imagefolder", len(class_ids))


def read_manifest(csv_path: Path, num_classes: int = 1000, class_ids: list[str] | None = None,
                  image_root: str | Path | None = None) -> Dataset:
    """A CSV with columns `path,label`; label is a class index or a catalog id."""
    csv_path = Path(csv_path)
    root = Path(image_root).expanduser() if image_root else csv_path.parent
    if not root.is_dir():
        raise UserError(f"image root {str(root)!r} is not a folder")
    index_of = {cid: i for i, cid in enumerate(class_ids or [])}
    samples: list[Sample] = []
    seen: set[str] = set()
    resolved_root = root.resolve()
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if not {"path", "label"} <= set(reader.fieldnames or ()):
                raise UserError(f"manifest {str(csv_path)!r} needs the columns path,label (found {reader.fieldnames})")
            for line, row in enumerate(reader, start=2):
                where = f"manifest {str(csv_path)!r}, line {line}"
                raw_path = (row["path"] or "").strip()
                if not raw_path:
                    raise UserError(f"{where}: empty path")
                full = (root / raw_path).resolve()
                try:
                    key = full.relative_to(resolved_root).as_posix()
                except ValueError:
                    raise UserError(f"{where}: path {raw_path!r} lies outside the image root {str(root)!r}") from None
                label = _parse_label((row["label"] or "").strip(), index_of, num_classes, where)
                if key in seen:
                    raise UserError(f"{where}: image {key!r} is listed twice")
                seen.add(key)
                samples.append(Sample(key, label))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"manifest {str(csv_path)!r} cannot be read: {exc}") from None
    return _finish(root, samples, "csv", num_classes, where=f"manifest {str(csv_path)!r}")


def _parse_label(text: str, index_of: dict[str, int], num_classes: int, where: str) -> int:
    if text in index_of:
        return index_of[text]
    try:
        label = int(text)
    except ValueError:
        raise UserError(f"{where}: label {text!r} is neither a class index nor a class id of the catalog") from None
    if not 0 <= label < num_classes:
        raise UserError(f"{where}: class index {label} is out of range (the catalog has {num_classes} classes)")
    return label


def _finish(root: Path, samples: list[Sample], layout: str, num_classes: int, where: str | None = None) -> Dataset:
    if not samples:
        raise UserError(f"{where or 'dataset ' + repr(str(root))} holds no images "
                        f"(looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return Dataset(root=root, samples=samples, layout=layout, num_classes=num_classes)


def check_images(dataset: Dataset, skip_bad: bool = False, progress: bool = True) -> Dataset:
    """Decode every image; stop at the first bad one, or with `skip_bad` set it aside and go on.

    Returns the dataset without the bad images; `dataset.skipped` lists (key, reason).
    """
    from tqdm.auto import tqdm

    good, skipped = [], []
    for sample in tqdm(dataset.samples, desc="checking images", unit="img", disable=not progress):
        try:
            load_image(dataset.path(sample.key), sample.key)
        except BadImageError as exc:
            if not skip_bad:
                raise UserError(f"{exc} (use --skip-bad to set bad images aside and go on)") from None
            skipped.append((sample.key, exc.reason))
            continue
        good.append(sample)
    if not good:
        raise UserError(f"dataset {str(dataset.root)!r}: no image could be read")
    return Dataset(root=dataset.root, samples=good, layout=dataset.layout, num_classes=dataset.num_classes,
                   skipped=dataset.skipped + skipped)
