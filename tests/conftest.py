"""Shared test fixtures: real photos (scikit-image's bundled data), a browser, artifacts."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = os.environ.get("MULTILABELFY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]

#: The real ImageNetV2 labels beside the checkout (../shared/data/imagenetv2: original labels and
#: the paper's released multi-labels); MULTILABELFY_IMAGENETV2 points elsewhere.
IMAGENETV2 = Path(os.environ.get("MULTILABELFY_IMAGENETV2", REPO.parent / "shared" / "data" / "imagenetv2"))
#: For tests of those labels: skipped on a machine without them, never in CI (where they must be).
needs_imagenetv2 = pytest.mark.skipif(not (IMAGENETV2 / "refined_labels.json").is_file() and not os.environ.get("CI"),
                                      reason=f"{IMAGENETV2} is missing")

#: Real photos that scikit-image ships, with the ImageNet-1k class each one shows.
PHOTOS: dict[str, int] = {
    "chelsea.png": 281,          # tabby cat
    "coffee.png": 967,           # espresso
    "astronaut.png": 834,        # suit
    "rocket.jpg": 812,           # space shuttle
    "motorcycle_left.png": 670,  # motor scooter
    "clock_motion.png": 409,     # analog clock
    "brick.png": 825,            # stone wall
    "camera.png": 759,           # reflex camera
}


def skimage_photo(name: str) -> Path:
    """Path of one of scikit-image's bundled photos."""
    import skimage

    path = Path(skimage.__file__).parent / "data" / name
    assert path.is_file(), f"scikit-image does not ship {name}"
    return path


def write_photo_dataset(root: Path, names: list[str] | None = None, per_class: int = 1,
                        max_side: int = 256) -> dict[str, int]:
    """An ImageNetV2-layout folder of real photos (re-encoded small JPEGs); returns key -> label.

    With per_class > 1 the extra copies are mirrored/cropped, so every file differs.
    """
    from PIL import Image, ImageOps

    labels: dict[str, int] = {}
    for name in names or list(PHOTOS):
        label = PHOTOS[name]
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        with Image.open(skimage_photo(name)) as image:
            image = image.convert("RGB")
            image.thumbnail((max_side, max_side))
            for copy in range(per_class):
                variant = image if copy == 0 else ImageOps.mirror(image) if copy % 2 else image.crop(
                    (copy, copy, image.width - copy, image.height - copy))
                file_name = f"{Path(name).stem}_{copy}.jpeg"
                variant.save(folder / file_name, quality=90)
                labels[f"{label}/{file_name}"] = label
    return labels


@pytest.fixture
def photo_dataset(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """(root, key -> label) for 8 real photos in ImageNetV2 layout."""
    root = tmp_path / "data"
    return root, write_photo_dataset(root)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests leave screenshots and other artifacts for people to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def chromium():
    """A headless Debian Chromium driven by Playwright (never a downloaded browser).

    Skips when the browser is missing on a developer's machine; fails in CI, where
    `.ci/run` installs it.
    """
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run must install Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def free_port() -> int:
    """A TCP port nobody listens on right now (for servers whose port must be known in advance)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class CollectorProcess:
    """`multilabelfy-collect` as a real server process on 127.0.0.1, started and stopped by tests."""

    def __init__(self, site: Path, private: Path, store: Path, port: int, *extra: str):
        import sys

        self.command = [str(Path(sys.executable).parent / "multilabelfy-collect"), "--site", str(site),
                        "--private", str(private), "--store", str(store), "--port", str(port), *extra]
        self.base = f"http://127.0.0.1:{port}"
        self.log = store.with_name(store.name + ".log")
        self.proc = None

    def start(self, timeout: float = 30) -> "CollectorProcess":
        import subprocess
        import time
        import urllib.request

        self.proc = subprocess.Popen(self.command, stdout=subprocess.DEVNULL,
                                     stderr=self.log.open("a"), text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"collector exited: {self.log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(self.base + "/api/health", timeout=1)
                return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError("collector did not answer /api/health")

    def stop(self) -> int:
        if self.proc is None:
            return 0
        self.proc.terminate()
        code = self.proc.wait(timeout=15)
        self.proc = None
        return code


class StaticServer:
    """A plain static file server in a thread, like GitHub Pages for the tests."""

    def __init__(self, root: Path):
        import functools
        import http.server
        import threading

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
