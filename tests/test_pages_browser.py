"""The annotation pages in a real Chromium: keys, mouse, groups, exemplars, submitting, the queue.

The site is built by the real console script from real photos; a stub collector (a tiny
threaded http.server answering CORS preflight) records what the pages send.
"""
from __future__ import annotations

import csv
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_site import build_site, make_inputs

from conftest import CollectorProcess, StaticServer, free_port

pytestmark = pytest.mark.browser


class StubCollector:
    """Records POST /api/submissions bodies and headers; answers preflight for any origin."""

    def __init__(self, port: int):
        self.port = port
        self.received: list[dict] = []
        self.headers: list[dict] = []
        self.origins: list[str] = []
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> "StubCollector":
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _cors(self):
                self.send_header("Access-Control-Allow-Origin", self.headers.get("Origin") or "*")
                self.send_header("Access-Control-Allow-Headers", "Authorization, Content-Type")
                self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")

            def do_OPTIONS(self):
                self.send_response(204)
                self._cors()
                self.end_headers()

            def do_GET(self):
                self.send_response(404)
                self._cors()
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"error": "no such endpoint"}')

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                record = json.loads(body)
                stub.received.append(record)
                stub.headers.append(dict(self.headers))
                stub.origins.append(self.headers.get("Origin", ""))
                answer = json.dumps({"id": record["id"], "status": "stored"}).encode()
                self.send_response(201)
                self._cors()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def wait(self, count: int, timeout: float = 10) -> list[dict]:
        end = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < end:
            time.sleep(0.05)
        return self.received


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A built site whose pages post to a stub collector's port; a static server for the site."""
    tmp = tmp_path_factory.mktemp("browser")
    paths = make_inputs(tmp)
    port = free_port()
    build_site(paths, collector=f"http://127.0.0.1:{port}")
    with (paths["private"] / "links.csv").open(newline="") as fh:
        links = {(r["annotator"], int(r["batch"])): r["url"] for r in csv.DictReader(fh)}
    static = StaticServer(paths["site"])
    yield {"paths": paths, "port": port, "links": links, "base": static.base + "/"}
    static.close()


@pytest.fixture
def stub(site):
    collector = StubCollector(site["port"]).start()
    yield collector
    collector.stop()


def manifest_images(site, batch: int) -> list[dict]:
    data = json.loads((site["paths"]["site"] / "manifest.json").read_text())
    return next(b["images"] for b in data["stages"]["annotate"]["batches"] if b["batch"] == batch)


def open_batch(browser, site, annotator: str, batch: int, base: str | None = None):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto((base or site["base"]) + site["links"][(annotator, batch)])
    return context, page, errors


def visible_boxes(page):
    return page.locator("fieldset[role=tabpanel]:not([hidden]) input[name=l]")


def test_annotate_with_keys_and_mouse_and_submit(chromium, site, stub, artifacts_dir) -> None:
    context, page, errors = open_batch(chromium, site, "alice", 1)
    token = site["links"][("alice", 1)].split("#token=")[1]
    # the token moved from the address bar into this browser's storage
    assert "token" not in page.url
    assert page.evaluate("localStorage.getItem('mlf:annotate:1:token')") == json.dumps(token)
    page.click("#continue")
    page.wait_for_url("**/0001.html")
    image = manifest_images(site, 1)[0]
    shown = image["shown"]

    assert page.locator("[role=tab]").count() == 4
    assert visible_boxes(page).count() == 5
    assert page.locator("fieldset[role=tabpanel]:not([hidden]) .strip img").count() == 50
    assert page.locator(".strip").count() == 20 and page.locator(".strip img").count() == 200

    page.keyboard.press("1")                        # key: first label of group 1
    assert visible_boxes(page).nth(0).is_checked()
    page.keyboard.press("ArrowRight")               # key: group 2
    assert page.locator("#g2").is_visible() and not page.locator("#g1").is_visible()
    page.keyboard.press("2")                        # key: second label of group 2
    page.keyboard.press("ArrowRight")
    page.locator("[role=tab]").nth(3).click()       # mouse: group 4
    visible_boxes(page).nth(4).locator("xpath=..").click()   # mouse: the last label, by its name
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")                # back to group 2, untick what we ticked there
    page.keyboard.press("2")
    assert not visible_boxes(page).nth(1).is_checked()
    page.keyboard.press("2")
    assert page.locator("#t1 .count").inner_text() == " (1)"

    # an exemplar opens at full size in an overlay; Escape closes it
    thumb = page.locator("#g2 .strip a").nth(3)
    thumb.click()
    overlay = page.locator("#overlay")
    assert overlay.is_visible()
    src = overlay.locator("img").get_attribute("src")
    assert src.endswith("/3.full.jpg")
    page.wait_for_function("document.querySelector('#overlay img').naturalWidth > 0")
    page.screenshot(path=str(artifacts_dir / "pages_exemplar_overlay.png"))
    page.keyboard.press("Escape")
    assert not overlay.is_visible()
    # focus returns to that proposal's checkbox, so Enter submits rather than reopening the overlay
    assert page.evaluate("document.activeElement.name") == "l"

    page.fill("#comment", "two animals & a <tag>")
    page.screenshot(path=str(artifacts_dir / "pages_annotate.png"), full_page=False)
    visible_boxes(page).nth(1).focus()
    page.keyboard.press("Enter")                    # submit and go to the next image
    page.wait_for_url("**/0002.html")
    [record] = stub.wait(1)
    assert set(record) == {"id", "stage", "batch", "image", "labels", "none", "reason", "comment", "shown",
                           "elapsed_ms", "client_time"}
    assert record["labels"] == [shown[0], shown[6], shown[19]]
    assert (record["stage"], record["batch"], record["image"]) == ("annotate", 1, image["key"])
    assert record["shown"] == image["shown_hash"]
    assert record["none"] is False and record["reason"] is None
    assert record["comment"] == "two animals & a <tag>"
    assert record["elapsed_ms"] > 0 and len(record["id"]) >= 16 and record["client_time"].endswith("Z")
    assert stub.headers[0]["Authorization"] == f"Bearer {token}"
    assert stub.headers[0]["Content-Type"] == "application/json"
    page.wait_for_function("document.getElementById('saved').textContent.startsWith('1 of 8')")

    # going back shows the answer as saved, and the choices survive
    page.go_back()
    page.wait_for_url("**/0001.html")
    page.wait_for_function("document.getElementById('status').textContent === 'Saved'")
    assert page.locator("input[name=l]:checked").count() == 3
    assert errors == []
    context.close()


def test_unsaved_state_survives_reload(chromium, site, stub) -> None:
    context, page, errors = open_batch(chromium, site, "bob", 1)
    page.goto(site["base"] + "annotate/1/0003.html")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("3")
    page.fill("#comment", "half done")
    page.reload()
    assert page.locator("#g2").is_visible()
    assert visible_boxes(page).nth(2).is_checked()
    assert page.input_value("#comment") == "half done"
    # "none" clears the labels and needs a reason before it can be sent
    page.keyboard.press("0")
    assert page.locator("input[name=l]:checked").count() == 0
    page.click("#submit")
    assert "why none" in page.locator("#error").inner_text()
    assert stub.received == [] and errors == []
    context.close()


def test_collector_down_queues_then_sends_once_up(chromium, site, artifacts_dir) -> None:
    context, page, errors = open_batch(chromium, site, "carol", 2)
    page.goto(site["base"] + "annotate/2/0002.html")
    image = manifest_images(site, 2)[1]
    page.keyboard.press("0")                                    # none of these fit
    page.locator("input[name=reason][value=needs-expert]").check()
    page.keyboard.press("Enter")
    page.wait_for_url("**/0003.html")
    queue = json.loads(page.evaluate("localStorage.getItem('mlf:annotate:2:queue')"))
    assert len(queue) == 1 and queue[0]["image"] == image["key"]
    assert queue[0]["none"] is True and queue[0]["labels"] == [] and queue[0]["reason"] == "needs-expert"
    page.wait_for_function("!document.getElementById('queue').hidden")
    assert "1 waiting" in page.locator("#queued").inner_text()
    page.screenshot(path=str(artifacts_dir / "pages_queued.png"))

    collector = StubCollector(site["port"]).start()            # the collector comes up
    try:
        page.reload()                                           # (a retry timer would also send it)
        [record] = collector.wait(1)
        assert record == queue[0]
        page.wait_for_function("localStorage.getItem('mlf:annotate:2:queue') === '[]'")
        page.wait_for_function("document.getElementById('queue').hidden")
        time.sleep(0.5)
        assert len(collector.received) == 1, "sent exactly once"
    finally:
        collector.stop()
    assert errors == []
    context.close()


def test_works_from_a_file_copy(chromium, site, stub) -> None:
    """Opened from file:// (a local copy), the page still submits, with Origin: null."""
    base = site["paths"]["site"].as_uri() + "/"
    context, page, errors = open_batch(chromium, site, "dave", 2, base=base)
    page.click("#continue")
    page.wait_for_url("**/0001.html")
    page.keyboard.press("4")
    page.keyboard.press("Enter")
    page.wait_for_url("**/0002.html")
    [record] = stub.wait(1)
    assert record["labels"] == [manifest_images(site, 2)[0]["shown"][3]]
    assert stub.origins == ["null"]
    assert errors == []
    context.close()


def test_end_to_end_with_the_real_collector(chromium, tmp_path) -> None:
    """Pages served by `multilabelfy-collect --serve-site` post to it; its progress endpoint marks
    the answered image on a fresh browser."""
    paths = make_inputs(tmp_path, per_class=1)
    build_site(paths, collector="")                      # same origin as the pages
    with (paths["private"] / "links.csv").open(newline="") as fh:
        link = next(r["url"] for r in csv.DictReader(fh) if r["annotator"] == "alice")
    store = tmp_path / "submissions.jsonl"
    server = CollectorProcess(paths["site"], paths["private"], store, free_port(), "--serve-site").start()
    base = server.base + "/"
    try:
        context = chromium.new_context()
        page = context.new_page()
        page.goto(base + link)
        page.click("#continue")
        page.wait_for_url("**/0001.html")
        page.keyboard.press("2")
        page.keyboard.press("Enter")
        page.wait_for_url("**/0002.html")
        [record] = [json.loads(line) for line in store.read_text().splitlines()]
        image = manifest_images({"paths": paths}, 1)[0]
        assert record["annotator"] == "alice" and record["image"] == image["key"]
        assert record["labels"] == [image["shown"][1]] and record["shown"] == image["shown_hash"]
        context.close()
        fresh = chromium.new_context()                   # another device: no localStorage
        page = fresh.new_page()
        page.goto(base + link)
        page.wait_for_function("document.querySelectorAll('.pages a.done').length === 1")
        assert page.locator("#continue").inner_text() == "Continue"
        fresh.close()
    finally:
        server.stop()


@pytest.mark.parametrize("width, height", [(768, 1024), (1366, 768)])
def test_image_and_submit_stay_in_sight_on_tablet_and_laptop(chromium, site, width, height, artifacts_dir) -> None:
    """Scrolled down to the last proposal, the image and "Submit" are still on screen."""
    page = chromium.new_page(viewport={"width": width, "height": height})
    page.goto(site["base"] + "annotate/1/0001.html")
    page.locator("fieldset[role=tabpanel]:not([hidden]) .p").last.scroll_into_view_if_needed()
    page.mouse.wheel(0, 400)
    for selector in (".photo img", "#submit"):
        box = page.locator(selector).bounding_box()
        assert box and box["y"] >= 0 and box["y"] + min(box["height"], 40) <= height, (selector, box)
    page.screenshot(path=str(artifacts_dir / f"pages_{width}x{height}.png"))
    page.close()
