"""Regenerate the bundled demo dataset from scikit-image's public-domain photos.

Run once by maintainers (needs scikit-image, a test dependency); its output is committed:
demo/data (ImageNetV2 layout: folders named by ImageNet class index), demo/exemplars
(10 exemplars per demo class, by class index) and demo/SOURCES.md.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import skimage
from PIL import Image, ImageEnhance, ImageOps

HERE = Path(__file__).resolve().parent
DATA_DIR = Path(skimage.__file__).parent / "data"

#: demo image -> (ImageNet-1k class index, class name, source and licence)
PHOTOS = {
    "chelsea.png": (281, "tabby", "Chelsea the cat, Stefan van der Walt, CC0"),
    "coffee.png": (967, "espresso", "Coffee cup, Rachel Michetti for Pikolo Espresso Bar, CC0"),
    "rocket.jpg": (657, "missile", "DSCOVR launch on Falcon 9, SpaceX, public domain"),
    "astronaut.png": (834, "suit", "Eileen Collins, NASA Great Images, public domain"),
    "clock_motion.png": (409, "analog clock", "Motion-blurred wall clock, Stefan van der Walt, public domain"),
    "brick.png": (825, "stone wall", "Bricks25, CC0Textures, CC0"),
    "camera.png": (872, "tripod", "Camera man, Lav Varshney, CC0"),
    "horse.png": (339, "sorrel", "Horse silhouette, Andreas Preuss (openclipart), CC0"),
}
#: extra demo images cut from the photos above: name -> (photo, box as fractions, class, class name)
CROPS = {
    "astronaut_flag.png": ("astronaut.png", (0.0, 0.0, 0.45, 0.6), 557, "flagpole"),
    "coffee_cup.png": ("coffee.png", (0.1, 0.0, 0.9, 0.85), 968, "cup"),
    "chelsea_face.png": ("chelsea.png", (0.3, 0.0, 0.85, 0.9), 281, "tabby"),
}
MAX_SIDE = 320
EXEMPLARS_PER_CLASS = 10


def _open(name: str) -> Image.Image:
    image = Image.open(DATA_DIR / name)
    return image.convert("RGB")


def _variants(image: Image.Image, count: int) -> list[Image.Image]:
    """Crops, mirrors and tones of a photo: stand-in exemplars for the demo only."""
    out = []
    w, h = image.size
    for i in range(count):
        f = 0.55 + 0.04 * i
        cw, ch = int(w * f), int(h * f)
        x, y = (w - cw) * (i % 3) // 2, (h - ch) * ((i // 3) % 3) // 2
        crop = image.crop((x, y, x + cw, y + ch))
        if i % 2:
            crop = ImageOps.mirror(crop)
        crop = ImageEnhance.Brightness(crop).enhance(0.8 + 0.05 * (i % 5))
        crop.thumbnail((200, 200))
        out.append(crop)
    return out


def main() -> None:
    for sub in ("data", "exemplars"):
        shutil.rmtree(HERE / sub, ignore_errors=True)
    lines = ["# Demo dataset: sources and licences", "",
             "Photos bundled with scikit-image (its `skimage/data`), re-encoded as small JPEGs by "
             "`demo/make_demo.py`. Class = the ImageNet-1k index used as the image's original label.", "",
             "| file | class | source and licence |", "| --- | --- | --- |"]
    items = [(name, index, cls, source, None) for name, (index, cls, source) in PHOTOS.items()]
    items += [(name, index, cls, f"crop of {photo} above", (photo, box)) for name, (photo, box, index, cls) in CROPS.items()]
    for name, index, cls, source, crop in items:
        if crop:
            image = _open(crop[0])
            w, h = image.size
            image = image.crop(tuple(int(f * (w if i % 2 == 0 else h)) for i, f in enumerate(crop[1])))
        else:
            image = _open(name)
        image.thumbnail((MAX_SIDE, MAX_SIDE))
        dest = HERE / "data" / str(index) / f"{Path(name).stem}.jpg"
        dest.parent.mkdir(parents=True, exist_ok=True)
        image.save(dest, quality=82, optimize=True)
        lines.append(f"| `data/{index}/{dest.name}` | {index} {cls} | {source} |")
        if not (HERE / "exemplars" / str(index)).exists():
            for n, variant in enumerate(_variants(_open(crop[0] if crop else name), EXEMPLARS_PER_CLASS)):
                ex = HERE / "exemplars" / str(index) / f"{Path(name).stem}_{n:02d}.jpg"
                ex.parent.mkdir(parents=True, exist_ok=True)
                variant.save(ex, quality=75, optimize=True)
    lines += ["", "Exemplars (`exemplars/<class index>/`) are crops and mirrors of the same photos, "
              "so the demo works offline; a real run uses other images of each class "
              "(e.g. ImageNet train).", ""]
    (HERE / "SOURCES.md").write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    main()
