"""Render the static annotation site: one page per image, batch pages, the site index.

The same renderer serves both human stages: `annotate` (stage 2, built by
`multilabelfy-build pages`) and `refine` (stage 4, built by `multilabelfy-analyze refine`).
A caller describes each page with a generic `PageSpec` (which classes it shows, which are
pre-checked, vote counts, notes for the refiner) and calls `render_stage`; the templates
do the rest. Everything is written only when its content changed, so a rebuild with
nothing changed rewrites nothing.

Public API (also in docs/site.md):

    spec = PageSpec(key="17/a.jpeg", shown=[17, 3, 254], prechecked=[17], votes={17: "2 of 2"},
                    notes=["bob: none of these (needs-expert)"], comment_required_on_change=True)
    pages = render_stage(site_dir, "refine", {1: [spec, ...]}, catalog=catalog, dataset=dataset,
                         exemplar_dir=Path("train"), collector_url="https://collector.example")
    # -> {1: [formats.ManifestImage, ...]}; manifest.json and index.html are updated too
"""
from __future__ import annotations

import json
import os
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import markupsafe

from multilabelfy.collector import formats
from multilabelfy.collector.clitools import UserError

TEMPLATE_FOLDER = "site"      # inside the multilabelfy.templates package
STATIC_FOLDER = "static"      # in the site: page.css, page.js
IMAGE_FOLDER = "images"       # in the site: the images being annotated
GITHUB_PAGES_LIMIT = 1024 ** 3
STAGE_TITLES = {"annotate": "Annotate", "refine": "Refine"}


@dataclass
class PageSpec:
    """What one page shows. Annotation: `key` and `shown`; refinement adds the rest.

    - `shown`: class indices in page order (groups of `SiteOptions.group_size`);
    - `prechecked`: classes ticked when the page opens (first-stage choices);
    - `votes`: text beside a class, e.g. {17: "2 of 2"} (how many annotators chose it);
    - `notes`: lines shown to the refiner (first-stage comments and "none" reasons);
    - `comment_required_on_change`: the page asks for a comment when the submitted set
      differs from `prechecked` (the collector enforces the same rule).
    """
    key: str
    shown: list[int]
    prechecked: list[int] = field(default_factory=list)
    votes: dict[int, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    comment_required_on_change: bool = False


@dataclass
class SiteOptions:
    """How pages and images are rendered; stored in PRIVATE_DIR/build.json so refinement reuses them."""
    group_size: int = 5
    exemplars_per_class: int = 10
    thumb_size: int = 160
    exemplar_max_side: int = 800
    image_max_side: int = 0          # 0: the annotated images are copied at original resolution
    image_base_url: str = ""         # non-empty: images are not copied; pages load <base>/<key>
    seed: int = 0
    workers: int = 0                 # image worker processes; 0: one per core
    banner: str = ""                 # a warning shown on every page, e.g. proposals from random weights

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SiteOptions":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


# --- small file helpers -----------------------------------------------------------------

def write_if_changed(path: Path, data: str | bytes) -> bool:
    """Write atomically unless the file already holds exactly this; True when written."""
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        if path.stat().st_size == len(raw) and path.read_bytes() == raw:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(raw)
    os.replace(tmp, path)
    return True


def image_name(key: str) -> str:
    """The site file of an annotated image: a hash of its key (the key's class folder would give
    away the original label), keeping the suffix so the browser knows the type."""
    suffix = PurePosixPath(key).suffix.lower()
    return f"{IMAGE_FOLDER}/{hashlib.sha256(key.encode()).hexdigest()[:20]}{suffix}"


def page_path(stage: str, batch: int, number: int, total: int) -> str:
    """`<stage>/<batch>/0001.html`, relative to the site."""
    return f"{stage}/{batch}/{number:0{max(4, len(str(total)))}d}.html"


# --- the renderer -------------------------------------------------------------------------

def _environment():
    import jinja2
    from importlib.resources import files

    folder = Path(str(files("multilabelfy.templates"))) / TEMPLATE_FOLDER
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["num"] = lambda n: f"{n:,}"
    return env, folder


class Renderer:
    """Templates plus a cache of the proposal blocks that pages repeat (a class's name, synonyms,
    definition and exemplar strip): a page then costs little more than joining its 20 blocks."""

    def __init__(self, catalog, exemplars: dict[int, list], options: SiteOptions, collector_url: str):
        self.env, self.folder = _environment()
        self.page_template = self.env.get_template("page.html")
        self.batch_template = self.env.get_template("batch.html")
        self.class_template = self.env.get_template("class.html")
        self.catalog = catalog
        self.exemplars = exemplars
        self.options = options
        self.collector_url = collector_url.rstrip("/")
        self._fragments: dict[tuple, str] = {}

    def proposal(self, index: int, number: int, checked: bool, votes: str, root: str) -> str:
        """The HTML of one proposal (checkbox, name, synonyms, definition, exemplar strip), rendered
        once per (class, key number, checked, votes) and reused: most pages repeat most blocks."""
        cache_key = (index, number, checked, votes, root)
        cached = self._fragments.get(cache_key)
        if cached is None:
            cached = self._fragments[cache_key] = self.class_template.render(
                c=self.catalog[index], n=number, on=checked, votes=votes, ex=self.exemplars.get(index, ()), root=root)
        return cached

    def image_urls(self, key: str, root: str) -> tuple[str, str]:
        """(shown src, original-resolution href) of the annotated image."""
        if self.options.image_base_url:
            url = f"{self.options.image_base_url.rstrip('/')}/{quote(key)}"
            return url, url
        src = root + image_name(key)
        return src, src

    def page(self, stage: str, batch: int, number: int, total: int, spec: PageSpec, names: Sequence[str]) -> str:
        root = "../../"
        size = self.options.group_size
        prechecked = set(spec.prechecked)
        groups = []
        for start in range(0, len(spec.shown), size):
            chunk = spec.shown[start:start + size]
            html = "".join(self.proposal(int(c), k + 1, c in prechecked, spec.votes.get(c, ""), root)
                           for k, c in enumerate(chunk))
            groups.append({"html": markupsafe.Markup(html), "count": len(chunk)})
        cfg = {"kind": "page", "stage": stage, "batch": batch, "key": spec.key, "n": number, "total": total,
               "hash": formats.shown_digest(stage, spec.key, spec.shown), "pre": sorted(prechecked),
               "requireComment": spec.comment_required_on_change, "collector": self.collector_url,
               "root": root, "next": names[number] if number < total else "index.html"}
        src, href = self.image_urls(spec.key, root)
        return self.page_template.render(
            cfg=cfg, stage=stage, title=STAGE_TITLES[stage], batch=batch, n=number, total=total,
            groups=groups, size=size, notes=spec.notes, src=src, href=href, root=root,
            prev=names[number - 2] if number > 1 else "", next=names[number] if number < total else "",
            require=spec.comment_required_on_change, reasons=formats.NONE_REASONS,
            max_comment=formats.MAX_COMMENT_CHARS, banner=self.options.banner)

    def batch_index(self, stage: str, batch: int, names: Sequence[str], keys: Sequence[str]) -> str:
        cfg = {"kind": "batch", "stage": stage, "batch": batch, "total": len(names),
               "collector": self.collector_url, "root": "../../", "keys": list(keys)}
        return self.batch_template.render(cfg=cfg, stage=stage, title=STAGE_TITLES[stage], batch=batch,
                                          names=names, root="../../", banner=self.options.banner)


def _check_specs(stage: str, batches: dict[int, list[PageSpec]], catalog, dataset) -> None:
    if stage not in formats.STAGES:
        raise UserError(f"unknown stage {stage!r}; choose one of {', '.join(formats.STAGES)}")
    if not batches or not any(batches.values()):
        raise UserError(f"stage {stage!r} has no pages to render")
    known = set(dataset.keys)
    seen: set[tuple[int, str]] = set()
    for batch, specs in batches.items():
        if int(batch) < 1:
            raise UserError(f"batch numbers start at 1 (got {batch})")
        for spec in specs:
            if spec.key not in known:
                raise UserError(f"image {spec.key!r} is not in the dataset {str(dataset.root)!r}")
            if (batch, spec.key) in seen:
                raise UserError(f"image {spec.key!r} appears twice in batch {batch}")
            seen.add((batch, spec.key))
            if not spec.shown or len(set(spec.shown)) != len(spec.shown):
                raise UserError(f"image {spec.key!r}: the shown classes must be non-empty and distinct")
            bad = [c for c in spec.shown if not 0 <= int(c) < len(catalog)]
            if bad:
                raise UserError(f"image {spec.key!r}: class {bad[0]} is not in the catalog ({len(catalog)} classes)")
            if not set(spec.prechecked) <= set(spec.shown):
                raise UserError(f"image {spec.key!r}: pre-checked classes must be among the shown ones")


def render_stage(site_dir: Path, stage: str, batches: dict[int, list[PageSpec]], *, catalog, dataset,
                 exemplar_dir: Path | None, collector_url: str, options: SiteOptions | None = None,
                 progress: bool = True, save: bool = True) -> dict[int, list[formats.ManifestImage]]:
    """Render every page of one stage, its batch pages, images and exemplars; return the manifest entries.

    `batches` maps batch number (from 1) -> pages in order. `catalog` is a build.catalog.Catalog,
    `dataset` a build.datasets.Dataset (for image files), `exemplar_dir` an ImageNet-style folder
    (None: no exemplars), `collector_url` where pages POST (`""`: the site's own origin, for
    `multilabelfy-collect --serve-site`). With `save` (default), `manifest.json` gets this stage
    (other stages kept) and the site index is rewritten (`save_stage`).
    Pages and batch pages of this stage that are no longer part of it are removed.
    """
    from multilabelfy.build import exemplars as ex
    from tqdm.auto import tqdm

    options = options or SiteOptions()
    site_dir = Path(site_dir)
    _check_specs(stage, batches, catalog, dataset)
    site_dir.mkdir(parents=True, exist_ok=True)

    classes = {int(c) for specs in batches.values() for spec in specs for c in spec.shown}
    exemplar_paths: dict[int, list] = {}
    jobs: list[ex.ImageJob] = []
    if exemplar_dir is not None and options.exemplars_per_class > 0:
        chosen = ex.select_exemplars(Path(exemplar_dir), classes, catalog, per_class=options.exemplars_per_class,
                                     seed=options.seed, exclude=(dataset.path(s.key) for s in dataset))
        exemplar_paths, jobs = ex.exemplar_jobs(chosen, options.thumb_size, options.exemplar_max_side)
    if not options.image_base_url:
        jobs += [ex.ImageJob(str(dataset.path(spec.key)), image_name(spec.key), options.image_max_side)
                 for specs in batches.values() for spec in specs]
    ex.run_jobs(site_dir, jobs, workers=options.workers, progress=progress, desc="images and exemplars")

    copy_static(site_dir)
    renderer = Renderer(catalog, exemplar_paths, options, collector_url)
    pages: dict[int, list[formats.ManifestImage]] = {}
    expected: set[Path] = set()
    total_pages = sum(len(s) for s in batches.values())
    with tqdm(total=total_pages, desc=f"{stage} pages", unit="page", disable=not progress) as bar:
        for batch, specs in sorted(batches.items()):
            batch = int(batch)
            names = [PurePosixPath(page_path(stage, batch, n, len(specs))).name for n in range(1, len(specs) + 1)]
            entries = []
            for number, spec in enumerate(specs, start=1):
                rel = page_path(stage, batch, number, len(specs))
                write_if_changed(site_dir / rel, renderer.page(stage, batch, number, len(specs), spec, names))
                expected.add(site_dir / rel)
                entries.append(formats.ManifestImage(
                    key=spec.key, page=rel, shown=tuple(int(c) for c in spec.shown),
                    prechecked=tuple(int(c) for c in spec.prechecked),
                    shown_hash=formats.shown_digest(stage, spec.key, spec.shown)))
                bar.update()
            index = site_dir / stage / str(batch) / "index.html"
            write_if_changed(index, renderer.batch_index(stage, batch, names, [s.key for s in specs]))
            expected.add(index)
            pages[batch] = entries
    _remove_stale(site_dir / stage, expected)
    if save:
        save_stage(site_dir, stage, pages, num_classes=len(catalog), banner=options.banner)
    return pages


def _remove_stale(stage_dir: Path, expected: set[Path]) -> None:
    """Delete pages of this stage that the new build no longer has (a shrunk batch, a dropped batch)."""
    for path in sorted(stage_dir.glob("*/*.html")):
        if path not in expected:
            path.unlink()
    for folder in stage_dir.iterdir():
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def copy_static(site_dir: Path) -> None:
    """The pages' CSS and JavaScript, shared by all pages (rewritten only when changed)."""
    _, folder = _environment()
    for src in sorted((folder / STATIC_FOLDER).iterdir()):
        if src.is_file():
            write_if_changed(Path(site_dir) / STATIC_FOLDER / src.name, src.read_bytes())


def save_stage(site_dir: Path, stage: str, pages: dict[int, list[formats.ManifestImage]],
               num_classes: int, banner: str = "") -> formats.Manifest:
    """Add or replace one stage in `manifest.json` (other stages untouched) and rewrite the site index."""
    site_dir = Path(site_dir)
    path = site_dir / formats.MANIFEST_FILE
    if path.exists():
        try:
            manifest = formats.load_manifest(site_dir)
        except (ValueError, KeyError) as exc:
            raise UserError(f"{path} cannot be read ({exc}); move it away to start a new site") from None
        if manifest.num_classes != num_classes:
            raise UserError(f"{path} was built for {manifest.num_classes} classes, this catalog has {num_classes}")
    else:
        manifest = formats.Manifest(num_classes=num_classes)
    manifest.stages[stage] = {int(b): list(images) for b, images in pages.items()}
    manifest.extra.pop("_index", None)
    write_if_changed(path, formats.manifest_text(manifest))
    render_site_index(site_dir, manifest, banner)
    return manifest


def render_site_index(site_dir: Path, manifest: formats.Manifest, banner: str = "") -> None:
    """`SITE_DIR/index.html`: the stages and batches, with links to the batch pages (no secrets)."""
    env, _ = _environment()
    stages = [{"name": s, "title": STAGE_TITLES[s],
               "batches": [{"batch": b, "count": len(images)} for b, images in sorted(manifest.stages[s].items())]}
              for s in formats.STAGES if s in manifest.stages]
    write_if_changed(Path(site_dir) / "index.html", env.get_template("index.html").render(
        stages=stages, root="", cfg=None, banner=banner))


# --- size report ------------------------------------------------------------------------------

@dataclass
class SizeReport:
    """Bytes and files per part of the site, against GitHub Pages' 1 GB limit."""
    parts: dict[str, tuple[int, int]]  # part -> (files, bytes)

    @property
    def total(self) -> int:
        return sum(b for _, b in self.parts.values())

    def lines(self) -> list[str]:
        out = [f"  {name:<10} {files:>8,} files {size / 1e6:>10.1f} MB" for name, (files, size) in self.parts.items()]
        share = self.total / GITHUB_PAGES_LIMIT
        out.append(f"  {'total':<10} {sum(f for f, _ in self.parts.values()):>8,} files "
                   f"{self.total / 1e6:>10.1f} MB ({share:.1%} of GitHub Pages' 1 GB limit)")
        if share > 1:
            out.append("  too large for GitHub Pages: cap images with --image-max-side, or host them "
                       "elsewhere with --image-base-url")
        return out


def size_report(site_dir: Path, stages: Iterable[str] = formats.STAGES) -> SizeReport:
    site_dir = Path(site_dir)
    parts = {"pages": [0, 0], "images": [0, 0], "exemplars": [0, 0], "other": [0, 0]}
    stage_names = set(stages)
    for dirpath, _, filenames in os.walk(site_dir):
        top = Path(dirpath).relative_to(site_dir).parts[:1]
        top_name = top[0] if top else ""
        part = ("pages" if top_name in stage_names else "images" if top_name == IMAGE_FOLDER
                else "exemplars" if top_name == "exemplars" else "other")
        for name in filenames:
            parts[part][0] += 1
            parts[part][1] += os.path.getsize(os.path.join(dirpath, name))
    return SizeReport({k: (v[0], v[1]) for k, v in parts.items()})
