"""`multilabelfy-build pages`: the site and the private folder it writes, from real photos.

The helpers at the top (`make_inputs`, `build_site`) are shared by the browser tests.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from multilabelfy.collector.clitools import UserError

from conftest import PHOTOS, write_photo_dataset

BIN = Path(sys.executable).parent
TOP_K = 20
#: Classes the proposals draw from besides the photos' own: exemplar folders exist for all of them.
EXTRA_CLASSES = [1, 7, 22, 99, 151, 207, 292, 340, 404, 430, 508, 545, 600, 717, 780, 850, 920, 950]
NASTY = "<script>alert('x')</script> \"quoted\" & <b>bold</b>"


def write_exemplars(root: Path, classes: list[int], per_class: int = 11, by_wnid: dict[int, str] | None = None) -> None:
    """An ImageNet-style exemplar folder: one folder per class (by index, or by WordNet id when
    `by_wnid` names it) with `per_class` real-photo variants (mirrored/cropped copies)."""
    photos = list(PHOTOS)
    scratch = root.parent / f".{root.name}-scratch"
    for n, index in enumerate(classes):
        photo = photos[n % len(photos)]
        made = write_photo_dataset(scratch, [photo], per_class=per_class, max_side=120)
        folder = scratch / str(PHOTOS[photo])
        target = root / ((by_wnid or {}).get(index) or str(index))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(folder), str(target))
        assert len(made) == per_class
    shutil.rmtree(scratch, ignore_errors=True)


def write_test_proposals(path: Path, labels: dict[str, int], pool: list[int], added_every: int = 4) -> None:
    """A proposals table with deterministic scores; every `added_every`-th image has its original
    label outside the top K (so the page shows it in addition)."""
    import numpy as np

    from multilabelfy.build.proposals_table import write_proposals

    rows: dict[str, list] = {c: [] for c in ("key", "label", "classes", "probs", "label_rank", "label_prob", "label_added")}
    for n, (key, label) in enumerate(sorted(labels.items())):
        rng = np.random.default_rng(n)
        others = [c for c in pool if c != label]
        top = list(rng.permutation(others)[:TOP_K].astype(int))
        added = n % added_every == added_every - 1
        if not added:
            top = [label] + top[:TOP_K - 1]
            rng.shuffle(top[:3])
        probs = sorted(rng.dirichlet(np.ones(TOP_K + 5))[:TOP_K].tolist(), reverse=True)
        rank = top.index(label) + 1 if label in top else TOP_K + 3
        rows["key"].append(key)
        rows["label"].append(label)
        rows["classes"].append([int(c) for c in top])
        rows["probs"].append(probs)
        rows["label_rank"].append(rank)
        rows["label_prob"].append(probs[rank - 1] if rank <= TOP_K else 0.001)
        rows["label_added"].append(added)
    write_proposals(path, rows, {"model": "test-deterministic", "weights": "random", "top_k": TOP_K,
                                 "num_classes": 1000, "seed": 0})


def make_inputs(tmp: Path, per_class: int = 2, wnid_folders: bool = False) -> dict[str, Path]:
    """Dataset (8 real photos x per_class), exemplars for every proposed class, proposals table."""
    data = tmp / "data"
    labels = write_photo_dataset(data, per_class=per_class, max_side=200)
    pool = sorted(set(PHOTOS.values()) | set(EXTRA_CLASSES))
    by_wnid = None
    if wnid_folders:  # half the folders named by WordNet id, as in ImageNet train
        from multilabelfy.build.catalog import imagenet_catalog
        catalog = imagenet_catalog()
        by_wnid = {c: catalog[c].id for c in pool[::2]}
    write_exemplars(tmp / "exemplars", pool, by_wnid=by_wnid)
    write_test_proposals(tmp / "proposals.parquet", labels, pool)
    return {"data": data, "exemplars": tmp / "exemplars", "proposals": tmp / "proposals.parquet",
            "site": tmp / "site", "private": tmp / "private"}


def pages_args(paths: dict[str, Path], *extra: str, collector: str = "http://127.0.0.1:8765") -> list[str]:
    """The issue's command line, for these paths."""
    return ["pages", "--proposals", str(paths["proposals"]), "--data", str(paths["data"]),
            "--exemplars", str(paths["exemplars"]), "--annotators", "alice,bob,carol,dave",
            "--batches", "2", "--per-batch", "2", "--collector-url", collector,
            "--out", str(paths["site"]), "--private", str(paths["private"]), *extra]


def build_site(paths: dict[str, Path], *extra: str, collector: str = "http://127.0.0.1:8765") -> str:
    """Run the real console script; return its stdout."""
    result = subprocess.run([str(BIN / "multilabelfy-build"), *pages_args(paths, *extra, collector=collector)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


class _PageParser(HTMLParser):
    """Collects what the tests check: checkboxes per group, exemplar links and images, text."""

    def __init__(self) -> None:
        super().__init__()
        self.groups: list[list[dict]] = []
        self.strips: list[list[tuple[str, str]]] = []
        self.in_strip = False
        self.link: str | None = None
        self.scripts: list[str] = []
        self._script = False
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "fieldset" and a.get("role") == "tabpanel":
            self.groups.append([])
        elif tag == "input" and a.get("name") == "l":
            self.groups[-1].append(a)
        elif tag == "div" and a.get("class") == "strip":
            self.strips.append([])
            self.in_strip = True
        elif tag == "a" and self.in_strip:
            self.link = a["href"]
        elif tag == "img" and self.in_strip:
            self.strips[-1].append((self.link, a["src"]))
        elif tag == "script" and not a.get("src"):
            self._script = True

    def handle_endtag(self, tag):
        if tag == "div":
            self.in_strip = False
        if tag == "script":
            self._script = False

    def handle_data(self, data):
        (self.scripts if self._script else self.text).append(data)


def parse_page(path: Path) -> _PageParser:
    parser = _PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def snapshot(*folders: Path) -> dict[str, int]:
    """Every file under the folders with its modification time (ns)."""
    out = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                out[str(p)] = p.stat().st_mtime_ns
    return out


# --- tests ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("site")
    paths = make_inputs(tmp, wnid_folders=True)
    paths["stdout"] = build_site(paths)  # type: ignore[assignment]
    return paths


def test_pages_show_twenty_proposals_in_four_groups_with_ten_exemplars(built) -> None:
    from multilabelfy.build.proposals_table import read_proposals, shown_classes
    from multilabelfy.collector import formats

    manifest = formats.load_manifest(built["site"])
    frame, _ = read_proposals(built["proposals"])
    rows = {r.key: r for r in frame.itertuples()}
    images = [im for b in manifest.stages["annotate"].values() for im in b]
    assert len(images) == 16
    plain = [im for im in images if not rows[im.key].label_added]
    added = [im for im in images if rows[im.key].label_added]
    assert plain and added
    assert "RANDOM weights" in (built["site"] / "index.html").read_text(), "the site's front page warns too"
    positions = {list(im.shown).index(rows[im.key].label) for im in added}
    assert positions != {20}, "an added original label is not always the last one, where it would stand out"
    for im in images:
        row = rows[im.key]
        expected = shown_classes(im.key, row.classes, row.label, row.label_added)
        assert list(im.shown) == expected
        assert im.shown_hash == formats.shown_digest("annotate", im.key, expected)
        page = parse_page(built["site"] / im.page)
        values = [int(box["value"]) for group in page.groups for box in group]
        assert values == expected, "the page shows exactly the manifest's classes, in order"
        assert [len(g) for g in page.groups][:4] == [5, 5, 5, 5]
        assert len(page.groups) == (4 if len(expected) == 20 else 5)
        assert all("checked" not in box for g in page.groups for box in g), "nothing pre-checked in stage 2"
        assert len(page.strips) == len(expected)
        for strip in page.strips:
            assert len(strip) == 10
            for full, thumb in strip:
                for rel in (full, thumb):
                    assert (built["site"] / im.page).parent.joinpath(rel).resolve().is_file()
        html = (built["site"] / im.page).read_text()
        assert not re.search(r'(src|href)="(https?:)?//', html), "no CDN, fonts or scripts from elsewhere"
        assert 'class="banner"' in html and "RANDOM weights" in html, "random-weight proposals are flagged"
        cfg = json.loads("".join(page.scripts))
        assert cfg["hash"] == im.shown_hash and cfg["key"] == im.key and cfg["collector"] == "http://127.0.0.1:8765"
        # the original label is never marked: its checkbox looks like every other one
        boxes = [dict(box, value=None) for g in page.groups for box in g]
        assert all(b == boxes[0] for b in boxes) and "original label" not in " ".join(page.text).lower()


def test_exemplars_are_shared_deterministic_and_never_the_annotated_image(built, tmp_path) -> None:
    from PIL import Image

    from multilabelfy.build.catalog import imagenet_catalog
    from multilabelfy.build.exemplars import select_exemplars

    catalog = imagenet_catalog()
    thumbs = sorted((built["site"] / "exemplars").rglob("*.jpg"))
    # one set per class, stored once: 10 thumbnails + 10 full views per shown class
    shown = {c for p in json.loads((built["site"] / "manifest.json").read_text())["stages"]["annotate"]["batches"]
             for im in p["images"] for c in im["shown"]}
    assert len(thumbs) == 20 * len(shown)
    for t in thumbs[:20]:
        with Image.open(t) as image:
            assert max(image.size) <= (800 if t.name.endswith(".full.jpg") else 160)
    first = select_exemplars(built["exemplars"], shown, catalog, per_class=10, seed=0)
    again = select_exemplars(built["exemplars"], shown, catalog, per_class=10, seed=0)
    other = select_exemplars(built["exemplars"], shown, catalog, per_class=10, seed=1)
    assert first == again and first != other
    # an annotated image copied into the exemplar folder is never chosen, even under another name
    copy_dir = tmp_path / "ex" / "281"
    copy_dir.mkdir(parents=True)
    annotated = built["data"] / "281" / "chelsea_0.jpeg"
    shutil.copy(annotated, copy_dir / "zzz_copy.jpeg")
    shutil.copy(annotated, copy_dir / "aaa_copy.jpeg")
    chosen = select_exemplars(tmp_path / "ex", [281], catalog, per_class=10, exclude=[annotated])
    assert chosen == {281: []}


def test_private_folder_links_tokens_assignments(built) -> None:
    from multilabelfy.collector import formats

    private, site = built["private"], built["site"]
    with (private / "links.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["annotator", "stage", "batch", "url"]
    assert len(rows) == 4
    assignments = json.loads((private / "assignments.json").read_text())
    assert assignments == {"annotate": {"1": ["alice", "bob"], "2": ["carol", "dave"]}}
    grants = formats.load_tokens(private)
    tokens = []
    for row in rows:
        m = re.fullmatch(r"annotate/(\d)/index\.html#token=([A-Za-z0-9_-]{40,})", row["url"])
        assert m and int(m.group(1)) == int(row["batch"])
        assert row["annotator"] in assignments["annotate"][row["batch"]]
        tokens.append(m.group(2))
        assert grants[formats.token_hash(m.group(2))] == formats.Grant(row["annotator"], "annotate", int(row["batch"]))
    admin = (private / "admin_token.txt").read_text().strip()
    assert grants[formats.token_hash(admin)].admin
    assert len(set(tokens)) == 4
    # nothing secret is published: no token, no token hash anywhere under the site
    blob = b"".join(p.read_bytes() for p in site.rglob("*") if p.is_file())
    for secret in tokens + [admin] + [formats.token_hash(t) for t in tokens]:
        assert secret.encode() not in blob
    images = list(csv.DictReader((private / "images.csv").open()))
    assert len(images) == 16 and {r["key"] for r in images} == {
        im["key"] for b in json.loads((site / "manifest.json").read_text())["stages"]["annotate"]["batches"]
        for im in b["images"]}
    settings = json.loads((private / "build.json").read_text())
    assert settings["options"]["group_size"] == 5 and settings["collector_url"] == "http://127.0.0.1:8765"
    assert oct(private.stat().st_mode & 0o777) == "0o700"
    assert "16 pages in 2 batch(es)" in built["stdout"] and "GitHub Pages" in built["stdout"]


def test_batches_balanced_and_deterministic() -> None:
    from multilabelfy.build.access import assign_annotators, split_batches

    keys = [f"{c}/{i}.jpeg" for c in range(10) for i in range(10)]
    split = split_batches(keys, 7, seed=3)
    assert sorted(len(v) for v in split.values()) == [14] * 5 + [15] * 2
    assert sorted(k for v in split.values() for k in v) == sorted(keys)
    assert split == split_batches(keys, 7, seed=3) and split != split_batches(keys, 7, seed=4)
    assert len({k.split("/")[0] for k in split[1]}) > 5, "shuffled batches mix classes"
    assigned = assign_annotators([f"a{i}" for i in range(14)], 7, 2)
    assert all(len(set(v)) == 2 for v in assigned.values())
    loads = [sum(name in v for v in assign_annotators(list("abc"), 3, 2).values()) for name in "abc"]
    assert loads == [2, 2, 2]
    with pytest.raises(UserError, match="carol would get nothing"):
        assign_annotators(["alice", "bob", "carol"], 1, 2)


def test_rebuild_with_nothing_changed_rewrites_nothing(built) -> None:
    import time

    before = snapshot(built["site"], built["private"])
    links = (built["private"] / "links.csv").read_text()
    start = time.perf_counter()
    build_site(built)
    elapsed = time.perf_counter() - start
    assert snapshot(built["site"], built["private"]) == before
    assert (built["private"] / "links.csv").read_text() == links
    assert elapsed < 20


def test_escaping_of_names_from_data(tmp_path) -> None:
    """Class names, synonyms, definitions and file names with markup, quotes and & stay text."""
    from multilabelfy.build.catalog import imagenet_catalog

    paths = make_inputs(tmp_path, per_class=1)
    weird = paths["data"] / "281" / f"odd {NASTY.replace('/', '_')}.jpeg"
    shutil.copy(paths["data"] / "281" / "chelsea_0.jpeg", weird)
    labels = {p.relative_to(paths["data"]).as_posix(): int(p.parent.name) for p in paths["data"].rglob("*.jpeg")}
    pool = sorted(set(PHOTOS.values()) | set(EXTRA_CLASSES))
    write_test_proposals(paths["proposals"], labels, pool)
    rows = [{"index": c.index, "id": c.id, "name": f"{c.name} {NASTY}", "synonyms": [f"syn {NASTY}", "x & y"],
             "definition": f"def {NASTY}"} for c in imagenet_catalog()]
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(rows))
    build_site(paths, "--catalog", str(catalog))
    pages = sorted((paths["site"] / "annotate").rglob("0*.html"))
    assert pages
    for page in pages:
        html = page.read_text()
        assert "<script>alert" not in html and "<b>bold" not in html
        assert "&lt;script&gt;alert(" in html and "&amp; &lt;b&gt;" in html
        parsed = parse_page(page)
        assert NASTY in "".join(parsed.text)  # the browser shows the text as written
        cfg = json.loads("".join(parsed.scripts))
        assert "</script" not in "".join(parsed.scripts)
        if "odd" in cfg["key"]:
            assert cfg["key"] == labels_key(weird, paths["data"])


def labels_key(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def test_user_errors_are_one_sentence(tmp_path, capsys) -> None:
    from multilabelfy.build.cli import main

    paths = make_inputs(tmp_path, per_class=1)

    def fails(args: list[str], message: str) -> None:
        try:
            code = main(args)
        except SystemExit as exc:  # argparse refuses bad option values itself
            code = exc.code
        err = capsys.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err, (args, err)

    def with_option(option: str, value: str) -> list[str]:
        args = pages_args(paths)
        args[args.index(option) + 1] = value
        return args

    fails(with_option("--per-batch", "5"), "--per-batch 5 needs at least 5 annotators")
    fails(with_option("--batches", "99"), "more than the 8 images")
    fails(with_option("--collector-url", "ftp://x"), "must start with http")
    fails(with_option("--private", str(paths["site"] / "private")), "must be separate folders")
    other = tmp_path / "other"
    write_photo_dataset(other, ["rocket.jpg"])
    fails(with_option("--data", str(other)), "is not in the dataset")
    assert not (paths["site"] / "manifest.json").exists(), "refused before anything is written"


def test_image_size_cap_and_external_images(tmp_path, capsys) -> None:
    """--image-max-side shrinks the annotated images; --image-base-url leaves them out of the site."""
    from PIL import Image

    from multilabelfy.build.cli import main

    paths = make_inputs(tmp_path, per_class=1)
    assert main(pages_args(paths, "--image-max-side", "64", "--exemplars-per-class", "3")) == 0
    images = sorted((paths["site"] / "images").iterdir())
    assert len(images) == 8
    for path in images:
        with Image.open(path) as image:
            assert max(image.size) == 64
    page = sorted((paths["site"] / "annotate" / "1").glob("0*.html"))[0]
    assert all(len(strip) == 3 for strip in parse_page(page).strips)
    assert "GitHub Pages" in capsys.readouterr().out

    shutil.rmtree(paths["site"])
    assert main(pages_args(paths, "--image-base-url", "https://img.example.org/v2")) == 0
    assert not (paths["site"] / "images").exists()
    cfg = json.loads("".join(parse_page(page).scripts))
    html = page.read_text()
    assert f'src="https://img.example.org/v2/{cfg["key"]}"' in html


def test_largest_imagenet_page_stays_under_40_kb() -> None:
    """The 21 ImageNet classes with the longest texts, 10 exemplars each, on one page."""
    from multilabelfy.build.catalog import imagenet_catalog
    from multilabelfy.build.exemplars import Exemplar
    from multilabelfy.build.site import PageSpec, Renderer, SiteOptions

    catalog = imagenet_catalog()
    exemplars = {c: [Exemplar(f"exemplars/{c}/{n}.jpg", f"exemplars/{c}/{n}.full.jpg") for n in range(10)]
                 for c in range(len(catalog))}
    renderer = Renderer(catalog, exemplars, SiteOptions(), "https://collector.example.org")
    longest = sorted(range(len(catalog)), key=lambda c: len(renderer.proposal(c, 1, False, "", "../../")))[-21:]
    spec = PageSpec(key="n01440764/ILSVRC2012_val_00000293.JPEG", shown=longest)
    html = renderer.page("annotate", 7, 1428, 1428, spec, [f"{n:04d}.html" for n in range(1, 1429)])
    assert html.count('class="strip"') == 21
    assert len(html.encode()) < 40 * 1024
