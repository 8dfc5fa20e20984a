"""Exemplar images per class, and every image file the site holds (resized in parallel).

Each class shown on any page gets `per_class` exemplars chosen deterministically (seeded
by the class id) from an ImageNet-style folder (class folders named by index or by class
id, e.g. WordNet IDs). They are stored once per class in the site, as a small thumbnail
for the strip and a capped copy for the full view, and every page links to them.

All image writing goes through `run_jobs`: jobs run in worker processes, and a job whose
source file and settings did not change since the last build is skipped (fingerprints in
`SITE_DIR/.multilabelfy-images.json`, which holds hashes only, no local paths), so a
rebuild with nothing changed rewrites nothing.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from multilabelfy.collector.clitools import UserError
from multilabelfy.collector.formats import atomic_write_text

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
STATE_FILE = ".multilabelfy-images.json"
EXEMPLAR_FOLDER = "exemplars"
JPEG_QUALITY = 85


@dataclass(frozen=True)
class Exemplar:
    """One exemplar as the pages use it: site-relative paths of its thumbnail and full view."""
    thumb: str
    full: str


@dataclass(frozen=True)
class ImageJob:
    """Write `dst` (relative to the site) from `src`: a byte copy, or resized to fit `max_side`."""
    src: str
    dst: str
    max_side: int = 0          # 0: copy the file as it is
    quality: int = JPEG_QUALITY

    def fingerprint(self) -> str:
        """Changes when the source file or the settings change (no path is stored in clear)."""
        st = os.stat(self.src)
        raw = f"{Path(self.src).resolve()}|{st.st_size}|{st.st_mtime_ns}|{self.max_side}|{self.quality}"
        return hashlib.sha256(raw.encode()).hexdigest()[:24]


@dataclass
class JobStats:
    written: int = 0
    skipped: int = 0


# --- choosing exemplars --------------------------------------------------------------

def class_folders(root: Path, catalog) -> dict[int, Path]:
    """Class index -> its folder in `root`: folders named by index (`281`) or by class id (`n02123045`)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"exemplar folder {str(root)!r} does not exist or is not a folder")
    by_name = {p.name: p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    found: dict[int, Path] = {}
    for info in catalog:
        folder = by_name.get(info.id) or by_name.get(str(info.index))
        if folder is not None:
            found[info.index] = folder
    if by_name and not found:
        raise UserError(f"exemplar folder {str(root)!r}: no sub-folder is named by a class index or a class id "
                        f"of the catalog (found e.g. {sorted(by_name)[0]!r})")
    return found


def _image_files(folder: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files.extend(Path(dirpath, n) for n in sorted(filenames)
                     if not n.startswith(".") and Path(n).suffix.lower() in IMAGE_SUFFIXES)
    return files


class _Excluder:
    """Recognises the images being annotated, by path and by content (a copy elsewhere counts too)."""

    def __init__(self, paths: Iterable[Path]):
        self.paths = {Path(p).resolve() for p in paths}
        self.sizes: dict[int, list[Path]] = {}
        for p in self.paths:
            try:
                self.sizes.setdefault(p.stat().st_size, []).append(p)
            except OSError:
                pass
        self._digests: dict[Path, str] = {}

    def _digest(self, path: Path) -> str:
        if path not in self._digests:
            self._digests[path] = hashlib.sha256(path.read_bytes()).hexdigest()
        return self._digests[path]

    def __contains__(self, path: Path) -> bool:
        resolved = path.resolve()
        if resolved in self.paths:
            return True
        same_size = self.sizes.get(resolved.stat().st_size)
        return bool(same_size) and any(self._digest(resolved) == self._digest(p) for p in same_size)


def select_exemplars(root: Path, classes: Iterable[int], catalog, *, per_class: int = 10, seed: int = 0,
                     exclude: Iterable[Path] = ()) -> dict[int, list[Path]]:
    """Class index -> up to `per_class` exemplar files, the same on every run with the same seed.

    The images being annotated (`exclude`, matched by path and by content) are never chosen.
    A class with fewer files gets what there is; one without a folder gets none.
    """
    folders = class_folders(root, catalog)
    excluder = _Excluder(exclude)
    chosen: dict[int, list[Path]] = {}
    for index in sorted(set(classes)):
        folder = folders.get(index)
        candidates = [] if folder is None else _image_files(folder)
        random.Random(f"{seed}:{catalog[index].id}").shuffle(candidates)
        picked: list[Path] = []
        for path in candidates:  # checks only as many files as needed (ImageNet train: 1,300 a class)
            if len(picked) == per_class:
                break
            if path not in excluder:
                picked.append(path)
        chosen[index] = picked
    return chosen


def exemplar_jobs(selection: dict[int, list[Path]], thumb_size: int, full_max_side: int
                  ) -> tuple[dict[int, list[Exemplar]], list[ImageJob]]:
    """Site paths of each class's exemplars, and the jobs that write them."""
    exemplars: dict[int, list[Exemplar]] = {}
    jobs: list[ImageJob] = []
    for index, files in selection.items():
        items = []
        for n, src in enumerate(files):
            thumb = f"{EXEMPLAR_FOLDER}/{index}/{n}.jpg"
            full = f"{EXEMPLAR_FOLDER}/{index}/{n}.full.jpg"
            jobs.append(ImageJob(str(src), thumb, thumb_size))
            jobs.append(ImageJob(str(src), full, full_max_side))
            items.append(Exemplar(thumb, full))
        exemplars[index] = items
    return exemplars, jobs


# --- writing image files ----------------------------------------------------------------

def resize_image(src: str, dst: str, max_side: int, quality: int = JPEG_QUALITY) -> None:
    """Write `src` scaled to fit `max_side` (never enlarged) as `dst`, atomically.

    JPEG sources are decoded at a reduced scale (`draft`), which is most of the speed-up
    over a plain open-and-resize loop.
    """
    from PIL import Image, ImageOps

    dst_path = Path(dst)
    dst_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst_path.with_name(f".{dst_path.name}.{os.getpid()}.tmp")
    with Image.open(src) as image:
        image.draft("RGB", (max_side, max_side))
        image = ImageOps.exif_transpose(image)
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        image.thumbnail((max_side, max_side))
        fmt = "JPEG" if dst_path.suffix.lower() in (".jpg", ".jpeg") else None
        image.save(tmp, format=fmt or Image.registered_extensions().get(dst_path.suffix.lower(), "PNG"),
                   **({"quality": quality} if fmt == "JPEG" else {}))
    os.replace(tmp, dst_path)


def _run_one(job: ImageJob, site_dir: str) -> str | None:
    """Worker: do one job; return an error sentence instead of raising (pickling-safe)."""
    dst = os.path.join(site_dir, job.dst)
    try:
        if job.max_side <= 0:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            tmp = f"{dst}.{os.getpid()}.tmp"
            shutil.copyfile(job.src, tmp)
            os.replace(tmp, dst)
        else:
            resize_image(job.src, dst, job.max_side, job.quality)
    except Exception as exc:  # Pillow raises many types for bad files
        return f"image {job.src!r} cannot be converted: {exc}"
    return None


def _run_chunk(jobs: Sequence[ImageJob], site_dir: str) -> list[str | None]:
    return [_run_one(job, site_dir) for job in jobs]


def run_jobs(site_dir: Path, jobs: Sequence[ImageJob], *, workers: int = 0, progress: bool = True,
             desc: str = "images") -> JobStats:
    """Do the jobs whose output is missing or out of date, in `workers` processes (0: one per core).

    The first unreadable source stops the build with its name; outputs already written stay
    valid and are skipped next time.
    """
    from tqdm.auto import tqdm

    site_dir = Path(site_dir)
    state_path = site_dir / STATE_FILE
    try:
        state: dict[str, str] = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = {}
    before = dict(state)
    todo: list[tuple[ImageJob, str]] = []
    stats = JobStats()
    for job in dict((j.dst, j) for j in jobs).values():
        try:
            fp = job.fingerprint()
        except OSError as exc:
            raise UserError(f"image {job.src!r} cannot be read: {exc.strerror}") from None
        if state.get(job.dst) == fp and (site_dir / job.dst).is_file():
            stats.skipped += 1
        else:
            todo.append((job, fp))
    errors: list[str] = []
    workers = workers or os.cpu_count() or 1
    try:
        with tqdm(total=len(todo), desc=desc, unit="img", disable=not progress or not todo) as bar:
            if workers == 1 or len(todo) < 8:
                results = ((job, fp, _run_one(job, str(site_dir))) for job, fp in todo)
                for job, fp, err in results:
                    _record(state, job, fp, err, errors, stats)
                    bar.update()
            else:
                chunk = max(1, min(64, len(todo) // (workers * 4)))
                groups = [todo[i:i + chunk] for i in range(0, len(todo), chunk)]
                with ProcessPoolExecutor(max_workers=workers) as pool:
                    futures = [(g, pool.submit(_run_chunk, [j for j, _ in g], str(site_dir))) for g in groups]
                    for group, future in futures:
                        for (job, fp), err in zip(group, future.result()):
                            _record(state, job, fp, err, errors, stats)
                        bar.update(len(group))
    finally:
        if state != before:
            site_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(state_path, json.dumps(state, sort_keys=True, indent=0) + "\n")
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise UserError(errors[0] + more)
    return stats


def _record(state: dict[str, str], job: ImageJob, fp: str, err: str | None, errors: list[str],
            stats: JobStats) -> None:
    if err is None:
        state[job.dst] = fp
        stats.written += 1
    else:
        state.pop(job.dst, None)
        errors.append(err)
