"""Dataset readers on real photos and on broken input."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from multilabelfy.build.catalog import imagenet_catalog
from multilabelfy.build.datasets import (BadImageError, check_images, load_image, open_dataset)
from multilabelfy.collector.clitools import UserError
from conftest import skimage_photo, write_photo_dataset


def _copy_photo(name: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    Image.open(skimage_photo(name)).convert("RGB").save(dest, quality=85)


def test_imagenetv2_folders_sort_numerically(tmp_path: Path) -> None:
    for folder, photo in (("100", "coffee.png"), ("2", "chelsea.png"), ("10", "rocket.jpg")):
        _copy_photo(photo, tmp_path / folder / f"{photo}.jpeg")
    dataset = open_dataset(tmp_path)
    assert dataset.layout == "imagenetv2"
    assert [(s.key, s.label) for s in dataset] == [
        ("2/chelsea.png.jpeg", 2), ("10/rocket.jpg.jpeg", 10), ("100/coffee.png.jpeg", 100)]


def test_photo_dataset_keys_and_labels(photo_dataset) -> None:
    root, expected = photo_dataset
    dataset = open_dataset(root)
    assert dataset.labels() == expected
    assert all("/" in key and "\\" not in key for key in dataset.keys)
    image = load_image(dataset.path(dataset[0].key))
    assert image.mode == "RGB" and min(image.size) > 16


def test_imagefolder_with_wordnet_ids(tmp_path: Path) -> None:
    catalog = imagenet_catalog()
    _copy_photo("chelsea.png", tmp_path / "n02123045" / "a.JPEG")   # tabby
    _copy_photo("coffee.png", tmp_path / "n07920052" / "b.JPEG")    # espresso
    dataset = open_dataset(tmp_path, class_ids=catalog.ids, num_classes=len(catalog))
    assert dataset.layout == "imagefolder"
    assert dataset.labels() == {"n02123045/a.JPEG": 281, "n07920052/b.JPEG": 967}


def test_csv_manifest(tmp_path: Path) -> None:
    catalog = imagenet_catalog()
    _copy_photo("chelsea.png", tmp_path / "img" / "cat.jpg")
    _copy_photo("coffee.png", tmp_path / "img" / "sub" / "cup.jpg")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label\nimg/cat.jpg,281\nimg/sub/cup.jpg,n07920052\n")
    dataset = open_dataset(manifest, class_ids=catalog.ids)
    assert dataset.layout == "csv"
    assert [(s.key, s.label) for s in dataset] == [("img/cat.jpg", 281), ("img/sub/cup.jpg", 967)]


@pytest.mark.parametrize("content, message", [
    ("path,label\n../outside.jpg,1\n", "outside the image root"),
    ("path,label\nimg/a.jpg,1000\n", "out of range"),
    ("path,label\nimg/a.jpg,cat\n", "neither a class index"),
    ("file,class\nimg/a.jpg,1\n", "needs the columns path,label"),
    ("path,label\nimg/a.jpg,1\nimg/a.jpg,2\n", "listed twice"),
])
def test_csv_manifest_errors_name_the_line(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "img").mkdir()
    manifest = tmp_path / "m.csv"
    manifest.write_text(content)
    with pytest.raises(UserError, match=message):
        open_dataset(manifest)


def test_bad_layouts_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        open_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no class folders"):
        open_dataset(tmp_path / "empty")
    (tmp_path / "noimages" / "3").mkdir(parents=True)
    with pytest.raises(UserError, match="holds no images"):
        open_dataset(tmp_path / "noimages")
    (tmp_path / "range" / "1000").mkdir(parents=True)
    with pytest.raises(UserError, match="out of range"):
        open_dataset(tmp_path / "range", layout="imagenetv2")
    (tmp_path / "mixed" / "5").mkdir(parents=True)
    (tmp_path / "mixed" / "cats").mkdir()
    with pytest.raises(UserError, match=r"'cats'.*no class|cats.*is no class"):
        open_dataset(tmp_path / "mixed", layout="imagenetv2")
    with pytest.raises(UserError, match="not an id in the catalog"):
        open_dataset(tmp_path / "mixed", layout="imagefolder", class_ids=imagenet_catalog().ids)


def test_truncated_jpeg_is_named(tmp_path: Path) -> None:
    write_photo_dataset(tmp_path, ["chelsea.png", "coffee.png"])
    bad = tmp_path / "967" / "coffee_0.jpeg"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    with pytest.raises(BadImageError, match="coffee_0.jpeg") as info:
        load_image(bad, "967/coffee_0.jpeg")
    assert info.value.key == "967/coffee_0.jpeg"
    dataset = open_dataset(tmp_path)
    with pytest.raises(UserError, match="coffee_0.jpeg.*--skip-bad"):
        check_images(dataset, progress=False)
    checked = check_images(dataset, skip_bad=True, progress=False)
    assert checked.keys == ["281/chelsea_0.jpeg"]
    assert [key for key, _ in checked.skipped] == ["967/coffee_0.jpeg"]


def test_not_an_image_is_named(tmp_path: Path) -> None:
    fake = tmp_path / "1" / "notes.png"
    fake.parent.mkdir()
    fake.write_text("this is not a PNG")
    with pytest.raises(BadImageError, match="notes.png"):
        load_image(fake)
    shutil.rmtree(tmp_path / "1")


def test_symlink_loop_lists_each_image_once(tmp_path: Path) -> None:
    write_photo_dataset(tmp_path, ["chelsea.png", "coffee.png"])
    (tmp_path / "281" / "back").symlink_to("..")
    (tmp_path / "967" / "self").symlink_to(".")
    assert open_dataset(tmp_path).keys == ["281/chelsea_0.jpeg", "967/coffee_0.jpeg"]
