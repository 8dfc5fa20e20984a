"""Pages/s and thumbnails/s of the site builder, side by side with the obvious alternatives.

    .venv/bin/python benchmarks/bench_pages.py [--pages 10000] [--thumbs 400] [--workers 0]

Pages: `site.render_stage` (the real thing: checks, per-class fragment cache, write-if-changed,
manifest, batch pages) against a bare Jinja2 loop that renders the same page template with
the same inputs (each page's 20 proposal blocks rendered for that page) and writes every file. Then a
rebuild with nothing changed. Thumbnails: `exemplars.run_jobs` (worker processes, JPEG draft
decoding) against a bare Pillow loop (open, thumbnail, save) on the same photos.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def make_photos(folder: Path, count: int, side: int = 500) -> list[Path]:
    """`count` distinct real-photo JPEGs (scikit-image's photos, shifted crops), about side x 0.75 side."""
    from PIL import Image

    from conftest import PHOTOS, skimage_photo

    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    for name in PHOTOS:
        with Image.open(skimage_photo(name)) as image:
            sources.append(image.convert("RGB").resize((side + 40, int(side * 0.75) + 40)))
    out = []
    for n in range(count):
        image = sources[n % len(sources)]
        dx, dy = n % 40, (n // 40) % 40
        path = folder / f"{n:05d}.jpeg"
        image.crop((dx, dy, dx + side, dy + int(side * 0.75))).save(path, quality=90)
        out.append(path)
    return out


def bench_pages(tmp: Path, pages: int, workers: int) -> None:
    import jinja2
    import markupsafe

    from multilabelfy.build import site
    from multilabelfy.build.catalog import imagenet_catalog
    from multilabelfy.build.datasets import Dataset, Sample
    from multilabelfy.collector import formats

    catalog = imagenet_catalog()
    rng = random.Random(0)
    classes = list(range(0, 1000, 10))  # 100 classes with exemplar folders (10 photos each)
    photos = make_photos(tmp / "photos", 60)
    for c in classes:
        folder = tmp / "exemplars" / catalog[c].id
        folder.mkdir(parents=True)
        for n in range(10):
            os.link(photos[(c + n) % len(photos)], folder / f"{n}.jpeg")
    samples = [Sample(f"{c}/img_{n:05d}.jpeg", c) for n, c in enumerate(rng.choices(classes, k=pages))]
    dataset = Dataset(root=tmp / "data", samples=samples, layout="imagenetv2", num_classes=1000)
    specs = [site.PageSpec(key=s.key, shown=[s.label] + rng.sample([c for c in classes if c != s.label], 19))
             for s in samples]
    batches = {b + 1: specs[b::7] for b in range(7)}  # the paper: 7 batches
    options = site.SiteOptions(image_base_url="https://images.example.org", workers=workers)
    out = tmp / "site"

    def render() -> float:
        start = time.perf_counter()
        site.render_stage(out, "annotate", batches, catalog=catalog, dataset=dataset, exemplar_dir=tmp / "exemplars",
                          collector_url="https://collector.example.org", options=options, progress=False)
        return time.perf_counter() - start

    render()  # builds the exemplar thumbnails once; they are not part of the page timing below
    for page in (out / "annotate").rglob("*.html"):
        page.unlink()
    ours = render()
    unchanged = render()
    sizes = [p.stat().st_size for p in (out / "annotate").rglob("0*.html")]

    # the bare loop: the same page template and inputs, each proposal's block rendered in place
    renderer = site.Renderer(catalog, {}, options, "https://collector.example.org")
    renderer.exemplars = site_exemplars(out, classes)
    bare_out = tmp / "bare"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(renderer.folder)), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = lambda n: f"{n:,}"
    page_t, class_t = env.get_template("page.html"), env.get_template("class.html")
    start = time.perf_counter()
    for batch, items in batches.items():
        folder = bare_out / "annotate" / str(batch)
        folder.mkdir(parents=True)
        for number, spec in enumerate(items, start=1):
            groups = [{"html": markupsafe.Markup("".join(
                           class_t.render(c=catalog[c], n=k + 1, on=False, votes="", ex=renderer.exemplars.get(c, ()),
                                          root="../../") for k, c in enumerate(spec.shown[g:g + 5]))),
                       "count": len(spec.shown[g:g + 5])} for g in range(0, len(spec.shown), 5)]
            cfg = {"kind": "page", "stage": "annotate", "batch": batch, "key": spec.key, "n": number,
                   "total": len(items), "hash": formats.shown_digest("annotate", spec.key, spec.shown), "pre": [],
                   "requireComment": False, "collector": "https://collector.example.org", "root": "../../",
                   "next": "index.html"}
            html = page_t.render(cfg=cfg, stage="annotate", title="Annotate", batch=batch, n=number, total=len(items),
                                 groups=groups, size=5, notes=[], src="x", href="x", root="../../", prev="", next="",
                                 require=False, reasons=formats.NONE_REASONS, max_comment=2000)
            (folder / f"{number:04d}.html").write_text(html, encoding="utf-8")
    bare = time.perf_counter() - start

    print(f"pages: {pages:,} pages in 7 batches, 20 proposals x 10 exemplars each, {os.cpu_count()} cores")
    print(f"  render_stage      {ours:7.2f} s  {pages / ours:9,.0f} pages/s  (checks, manifest, batch pages included)")
    print(f"  bare Jinja2 loop  {bare:7.2f} s  {pages / bare:9,.0f} pages/s")
    print(f"  ratio ours/bare   {(pages / ours) / (pages / bare):7.2f}  (target >= 0.8)")
    print(f"  rebuild, nothing changed: {unchanged:.2f} s (no file rewritten)")
    print(f"  HTML per page: mean {statistics.mean(sizes) / 1024:.1f} KB, max {max(sizes) / 1024:.1f} KB (target < 40 KB)")
    if pages < 10000:
        print(f"  10,000 pages extrapolated: {ours * 10000 / pages:.1f} s (target < 15 s)")


def site_exemplars(out: Path, classes: list[int]) -> dict:
    from multilabelfy.build.exemplars import EXEMPLAR_FOLDER, Exemplar

    return {c: [Exemplar(f"{EXEMPLAR_FOLDER}/{c}/{n}.jpg", f"{EXEMPLAR_FOLDER}/{c}/{n}.full.jpg")
                for n in range(10) if (out / EXEMPLAR_FOLDER / str(c) / f"{n}.jpg").exists()] for c in classes}


def bench_thumbs(tmp: Path, count: int, workers: int) -> None:
    from PIL import Image

    from multilabelfy.build.exemplars import ImageJob, run_jobs

    photos = make_photos(tmp / "thumb-src", count)
    start = time.perf_counter()
    bare_dir = tmp / "bare-thumbs"
    bare_dir.mkdir()
    for n, path in enumerate(photos):
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((160, 160))
            image.save(bare_dir / f"{n}.jpg", quality=85)
    bare = time.perf_counter() - start
    out = tmp / "thumb-site"
    jobs = [ImageJob(str(p), f"exemplars/{n}.jpg", 160) for n, p in enumerate(photos)]
    start = time.perf_counter()
    stats = run_jobs(out, jobs, workers=workers, progress=False)
    ours = time.perf_counter() - start
    start = time.perf_counter()
    again = run_jobs(out, jobs, workers=workers, progress=False)
    cached = time.perf_counter() - start
    assert stats.written == count and again.skipped == count
    print(f"thumbnails: {count} JPEG photos 500x375 -> 160 px, workers={workers or os.cpu_count()}")
    print(f"  run_jobs          {ours:7.2f} s  {count / ours:9,.0f} thumbs/s")
    print(f"  bare Pillow loop  {bare:7.2f} s  {count / bare:9,.0f} thumbs/s")
    print(f"  ratio ours/bare   {(count / ours) / (count / bare):7.2f}  (target >= 0.8)")
    print(f"  again, nothing changed: {cached:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=10000, help="pages to render")
    parser.add_argument("--thumbs", type=int, default=400, help="thumbnails to make")
    parser.add_argument("--workers", type=int, default=0, help="image worker processes (0: one per core)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-pages-"))
    try:
        bench_thumbs(tmp, args.thumbs, args.workers)
        bench_pages(tmp, args.pages, args.workers)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
