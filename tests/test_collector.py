"""The collector as annotators meet it: a real `multilabelfy-collect` process on 127.0.0.1.

Every server here runs with torch, timm, pandas, numpy and jinja2 made unimportable, so
the whole file also proves that the collector needs only Bottle, waitress and the
standard library.
"""
from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from multilabelfy.collector import formats
from multilabelfy.collector.formats import Grant, Manifest, ManifestImage

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "timm", "pandas", "numpy", "jinja2")
#: Runs the collector's CLI with the heavy packages blocked at import time.
LAUNCH = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {HEAVY!r}:
            raise ImportError('blocked for the test: ' + name)
        return None
sys.meta_path.insert(0, Block())
from multilabelfy.collector.cli import main
raise SystemExit(main(sys.argv[1:]))
"""
ALLOWED_ORIGIN = "https://annotators.example.org"
SHOWN = [3, 17, 254, 88, 412]
SECRET = "this-must-never-be-served"


# --- a small world: manifest, tokens, site files ------------------------------------------

def image_keys(batch: int, count: int) -> list[str]:
    return [f"{batch}/img_{i:03d}.jpeg" for i in range(count)]


def page_image(stage: str, batch: int, key: str, prechecked: tuple[int, ...] = ()) -> ManifestImage:
    return ManifestImage(key=key, page=f"{stage}/{batch}/{key.split('/')[-1]}.html", shown=tuple(SHOWN),
                         prechecked=prechecked, shown_hash=formats.shown_digest(stage, key, SHOWN))


class World:
    """SITE_DIR (manifest + a few public files, PRIVATE_DIR inside it) and tokens."""

    ANNOTATORS = {"alice": 1, "bob": 1, "carol": 2}

    def __init__(self, root: Path) -> None:
        self.site = root / "site"
        self.private = self.site / "private"   # the worst case: private folder inside the site
        self.store = root / "submissions.jsonl"
        self.private.mkdir(parents=True)
        self.manifest = Manifest(num_classes=1000, stages={"annotate": {
            1: [page_image("annotate", 1, k) for k in image_keys(1, 50)],
            2: [page_image("annotate", 2, k) for k in image_keys(2, 10)]}})
        formats.save_manifest(self.site, self.manifest)
        self.tokens: dict[str, str] = {name: formats.new_token() for name in [*self.ANNOTATORS, "admin"]}
        grants = {formats.token_hash(self.tokens[n]): Grant(n, "annotate", b) for n, b in self.ANNOTATORS.items()}
        grants[formats.token_hash(self.tokens["admin"])] = Grant("admin", admin=True)
        self.grants = grants
        formats.save_tokens(self.private, grants)
        (self.private / formats.ADMIN_TOKEN_FILE).write_text(self.tokens["admin"])
        (self.site / "index.html").write_text("<!doctype html><title>batches</title>")
        (self.site / "annotate" / "1").mkdir(parents=True)
        (self.site / "annotate" / "1" / "img_000.jpeg.html").write_text("<!doctype html><p>page</p>")
        (self.site / "static").mkdir()
        (self.site / "static" / "page.js").write_text("console.log('page');")
        (self.site / "static" / "page.css").write_text("body { margin: 0 }")
        (self.site / "static" / "photo.jpeg").write_bytes(b"\xff\xd8\xff\xe0fake-jpeg")
        (self.site / ".hidden").write_text(SECRET)
        outside = root / "outside.txt"
        outside.write_text(SECRET)
        (self.site / "static" / "escape.txt").symlink_to(outside)
        (self.site / "tokens.json").write_text(SECRET)

    def record(self, annotator: str = "alice", index: int = 0, **changes: Any) -> dict[str, Any]:
        batch = self.ANNOTATORS.get(annotator, 1)
        key = image_keys(batch, 50)[index % (50 if batch == 1 else 10)]
        record = {"id": str(uuid.uuid4()), "stage": "annotate", "batch": batch, "image": key,
                  "labels": [17, 254], "shown": formats.shown_digest("annotate", key, SHOWN),
                  "elapsed_ms": 5321, "client_time": "2026-12-03T10:00:00.000Z"}
        record.update(changes)
        return record

    def stored(self) -> list[dict[str, Any]]:
        """Every line of the store, parsed: fails the test if one is not JSON."""
        if not self.store.exists():
            return []
        return [json.loads(line) for line in self.store.read_text(encoding="utf-8").splitlines()]


# --- a real server process ---------------------------------------------------------------------

class Server:
    """`multilabelfy-collect` in a subprocess on a free port, its log in a file."""

    def __init__(self, world: World, *extra: str, log_name: str = "collector.log") -> None:
        self.world = world
        self.log_path = world.store.parent / log_name
        args = ["--site", str(world.site), "--private", str(world.private), "--store", str(world.store),
                "--host", "127.0.0.1", "--port", "0", *extra]
        self.log_file = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-c", LAUNCH, *args], cwd=REPO,
                                     stdout=self.log_file, stderr=subprocess.STDOUT)
        try:
            self.port = self._wait_for_port()
            status, _, _ = self.call("GET", "/api/health")
            assert status == 200
        except BaseException:
            self.kill()  # never leave a server behind
            raise

    def _wait_for_port(self, timeout: float = 20) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.findall(r"listening on http://127\.0\.0\.1:(\d+)", self.log())
            if found:
                return int(found[-1])
            if self.proc.poll() is not None:
                raise AssertionError(f"collector exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.05)
        raise AssertionError(f"collector did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def call(self, method: str, path: str, body: Any = None, token: str | None = None,
             headers: dict[str, str] | None = None, conn: http.client.HTTPConnection | None = None,
             ) -> tuple[int, dict[str, str], Any]:
        """One request; the body is JSON-encoded unless it is already bytes."""
        own = conn is None
        conn = conn or self.connect()
        send = dict(headers or {})
        if token is not None:
            send["Authorization"] = f"Bearer {token}"
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        if data is not None:
            send.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=data, headers=send)
            resp = conn.getresponse()
            raw = resp.read()
            ctype = resp.getheader("Content-Type", "")
            parsed = json.loads(raw) if raw and ctype.startswith("application/json") else raw
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, parsed
        finally:
            if own:
                conn.close()

    def submit(self, record: dict[str, Any], annotator: str = "alice", **kw: Any) -> tuple[int, Any]:
        status, _, body = self.call("POST", "/api/submissions", record, token=self.world.tokens[annotator], **kw)
        return status, body

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """SIGTERM (or SIGINT, Ctrl-C), then the exit code (a clean shutdown is 0)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=15)
        finally:
            self.log_file.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.log_file.close()


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


@pytest.fixture
def server(world: World) -> Iterator[Server]:
    srv = Server(world, "--serve-site", "--allow-origin", ALLOWED_ORIGIN)
    yield srv
    code = srv.stop()
    assert code == 0, srv.log()
    assert "stopped" in srv.log()


# --- the happy path ----------------------------------------------------------------------------------

def test_submit_retry_conflict_and_progress(server: Server, world: World) -> None:
    record = world.record("alice", 3)
    status, body = server.submit(record)
    assert (status, body["status"], body["submitted"], body["assigned"]) == (201, "stored", 1, 50)
    assert server.submit(record) == (200, {"id": record["id"], "status": "duplicate", "submitted": 1, "assigned": 50})
    status, body = server.submit({**record, "labels": [3]})
    assert status == 409 and "different content" in body["error"]
    none_record = world.record("alice", 4, labels=[], none=True, reason="low-resolution")
    assert server.submit(none_record)[0] == 201
    assert server.submit(world.record("carol", 1), annotator="carol")[0] == 201

    stored = world.stored()
    assert [r["id"] for r in stored] == [record["id"], none_record["id"], stored[2]["id"]]
    first = stored[0]
    assert first["annotator"] == "alice" and first["labels"] == [17, 254] and first["image"] == record["image"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["server_time"])
    assert all(tok not in world.store.read_text() for tok in world.tokens.values())

    status, _, me = server.call("GET", "/api/progress/me", token=world.tokens["alice"])
    assert status == 200
    assert me == {"annotator": "alice", "stage": "annotate", "batch": 1, "assigned": 50,
                  "submitted": sorted([record["image"], none_record["image"]])}
    status, _, progress = server.call("GET", "/api/progress", token=world.tokens["admin"])
    assert status == 200
    rows = {(r["stage"], r["batch"], r["annotator"]): (r["assigned"], r["submitted"]) for r in progress["rows"]}
    assert rows == {("annotate", 1, "alice"): (50, 2), ("annotate", 1, "bob"): (50, 0),
                    ("annotate", 2, "carol"): (10, 1)}
    log = server.log()
    assert re.search(r"POST /api/submissions 201 [\d.]+ms stored annotator=alice", log)
    assert all(tok not in log for tok in world.tokens.values())


def test_manifest_and_tokens_reload_without_restart(server: Server, world: World) -> None:
    key = image_keys(1, 50)[0]
    refine_shown = SHOWN
    world.manifest.stages["refine"] = {1: [ManifestImage(
        key=key, page="refine/1/a.html", shown=tuple(refine_shown), prechecked=(17, 88),
        shown_hash=formats.shown_digest("refine", key, refine_shown))]}
    refiner = formats.new_token()
    time.sleep(0.01)  # a distinct mtime even on coarse clocks
    formats.save_manifest(world.site, world.manifest)
    formats.save_tokens(world.private, {**world.grants, formats.token_hash(refiner): Grant("dave", "refine", 1)})
    base = {"stage": "refine", "batch": 1, "image": key,
            "shown": formats.shown_digest("refine", key, refine_shown)}
    kept = {**base, "id": "r-1", "labels": [88, 17]}
    status, _, body = server.call("POST", "/api/submissions", kept, token=refiner)
    assert status == 201, body
    changed = {**base, "id": "r-2", "labels": [17]}
    status, _, body = server.call("POST", "/api/submissions", changed, token=refiner)
    assert status == 422 and "comment" in body["error"]
    status, _, _ = server.call("POST", "/api/submissions", {**changed, "comment": "88 is not in the photo"},
                               token=refiner)
    assert status == 201
    assert [r["annotator"] for r in world.stored()] == ["dave", "dave"]
    assert "reloaded" in server.log()


# --- hostile input --------------------------------------------------------------------------------------

def _hostile_cases(world: World) -> list[tuple[str, int, dict[str, Any]]]:
    """(what, expected status, request) for everything that must be refused."""
    tok = world.tokens["alice"]
    good = world.record("alice", 1)
    post = lambda body, token=tok, **kw: {"method": "POST", "path": "/api/submissions",  # noqa: E731
                                          "body": body, "token": token, **kw}
    return [
        ("malformed JSON", 400, post(b'{"id": "x", "stage": ')),
        ("not an object", 400, post(b"[1, 2, 3]")),
        ("NaN", 400, post(json.dumps({**good, "elapsed_ms": 1}).replace("1,", "NaN,", 1).encode())),
        ("repeated key", 400, post(b'{"id": "a", "id": "b"}')),
        ("not UTF-8", 400, post(b'{"id": "\xff"}')),
        ("wrong type: batch as string", 400, post({**good, "batch": "1"})),
        ("wrong type: batch as bool", 400, post({**good, "batch": True})),
        ("wrong type: labels as strings", 400, post({**good, "labels": ["17"]})),
        ("unknown field", 400, post({**good, "annotator": "mallory"})),
        ("missing field", 400, post({k: v for k, v in good.items() if k != "image"})),
        ("comment too long", 400, post({**good, "comment": "x" * (formats.MAX_COMMENT_CHARS + 1)})),
        ("huge body", 413, post({**good, "comment": "x" * (formats.MAX_BODY_BYTES + 10)})),
        ("text/plain", 415, post(json.dumps(good).encode(), headers={"Content-Type": "text/plain"})),
        ("unknown stage", 400, post({**good, "stage": "review"})),
        ("unknown image", 404, post({**good, "image": "1/nope.jpeg"})),
        ("label not shown", 422, post({**good, "labels": [17, 999]})),
        ("none with labels", 422, post({**good, "none": True})),
        ("no label and not none", 422, post({**good, "labels": []})),
        ("unknown reason", 400, post({**good, "labels": [], "none": True, "reason": "bored"})),
        ("outdated page", 409, post({**good, "shown": "0123456789abcdef"})),
        ("another annotator's batch", 403, post({**good, "batch": 2, "image": image_keys(2, 10)[0]})),
        ("missing token", 401, post(good, token=None)),
        ("wrong token", 401, post(good, token=formats.new_token())),
        ("admin token submits", 403, post(good, token=world.tokens["admin"])),
        ("admin endpoint, annotator token", 403, {"method": "GET", "path": "/api/progress", "token": tok}),
        ("admin endpoint, no token", 401, {"method": "GET", "path": "/api/progress"}),
        ("unknown endpoint", 404, {"method": "GET", "path": "/api/secrets"}),
    ]


def test_hostile_inputs_each_get_their_4xx_and_nothing_is_stored(server: Server, world: World) -> None:
    conn = server.connect()
    for what, expected, req in _hostile_cases(world):
        status, headers, body = server.call(**req)
        assert status == expected, f"{what}: {status} {body}"
        assert isinstance(body, dict) and body["error"], f"{what}: {body!r}"
        if status in (400, 413, 422):
            conn.close()
            conn = server.connect()
    # A giant declared body is refused by waitress itself, before reading it (plain-text 413).
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /api/submissions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n{" % (64 << 20))
        assert sock.recv(200).startswith(b"HTTP/1.1 413 ")
    assert world.stored() == []
    assert server.call("GET", "/api/health")[0] == 200
    assert server.submit(world.record("alice", 1))[0] == 201  # still serving
    log = server.log()
    assert "label 999 was not shown" in log and "unknown token" in log
    assert all(tok not in log for tok in world.tokens.values())


# --- CORS ---------------------------------------------------------------------------------------------------

def test_cors_preflight_allowed_and_foreign_origin(server: Server, world: World) -> None:
    ask = {"Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "authorization, content-type"}
    status, headers, _ = server.call("OPTIONS", "/api/submissions", headers={"Origin": ALLOWED_ORIGIN, **ask})
    assert status == 204
    assert headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "POST" in headers["access-control-allow-methods"]
    assert "authorization" in headers["access-control-allow-headers"].lower()

    status, headers, body = server.call("OPTIONS", "/api/submissions",
                                        headers={"Origin": "https://evil.example.com", **ask})
    assert status == 403 and "access-control-allow-origin" not in headers and "not allowed" in body["error"]

    status, headers, _ = server.call("POST", "/api/submissions", world.record(), token=world.tokens["alice"],
                                     headers={"Origin": ALLOWED_ORIGIN})
    assert status == 201 and headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    status, headers, _ = server.call("POST", "/api/submissions", world.record(), token=world.tokens["alice"],
                                     headers={"Origin": "https://evil.example.com"})
    assert status == 403 and "access-control-allow-origin" not in headers
    own = f"http://127.0.0.1:{server.port}"
    status, _, _ = server.call("POST", "/api/submissions", world.record(), token=world.tokens["alice"],
                               headers={"Origin": own})
    assert status == 201  # same origin (--serve-site) needs no --allow-origin
    status, _, _ = server.call("POST", "/api/submissions", world.record(), token=world.tokens["alice"],
                               headers={"Origin": f"https://127.0.0.1:{server.port}"})
    assert status == 201  # the same host behind a TLS proxy
    assert len(world.stored()) == 3


# --- the site -----------------------------------------------------------------------------------------------

def test_site_files_with_content_types_and_no_way_out(server: Server, world: World) -> None:
    expected = {"/": "text/html", "/annotate/1/img_000.jpeg.html": "text/html",
                "/static/page.js": "text/javascript", "/static/page.css": "text/css",
                "/static/photo.jpeg": "image/jpeg", "/manifest.json": "application/json"}
    for path, ctype in expected.items():
        status, headers, body = server.call("GET", path)
        assert status == 200, path
        assert headers["content-type"].split(";")[0] == ctype, path
        assert headers["x-content-type-options"] == "nosniff"
    assert server.call("GET", "/static/photo.jpeg")[2] == (world.site / "static" / "photo.jpeg").read_bytes()

    attempts = ["/../outside.txt", "/static/../../outside.txt", "/%2e%2e/outside.txt", "/%2E%2E%2Foutside.txt",
                "/static%2f..%2f..%2foutside.txt", "/static/%2e%2e/%2e%2e/outside.txt",
                "/static/..%5c..%5coutside.txt", "/static/escape.txt", "/.hidden", "/private/tokens.json",
                "/private/admin_token.txt", "/private/", "/tokens.json", "/../submissions.jsonl",
                "/static/page.js%00.html", "//etc/passwd", "/api/../private/tokens.json"]
    for path in attempts:
        status, _, body = server.call("GET", path)
        assert 400 <= status < 500, path
        text = body if isinstance(body, bytes) else json.dumps(body).encode()
        assert SECRET.encode() not in text and world.tokens["admin"].encode() not in text, path
    assert server.call("GET", "/api/health")[0] == 200

    # a folder without its slash is redirected, so its page's relative links resolve
    (world.site / "annotate" / "1" / "index.html").write_text("<!doctype html><a href='img_000.jpeg.html'>1</a>")
    status, headers, _ = server.call("GET", "/annotate/1")
    assert status == 301 and headers["location"].endswith("/annotate/1/")
    assert server.call("GET", "/annotate/1/")[0] == 200


# --- load, crash, two processes -----------------------------------------------------------------------------

def _post_many(server: Server, world: World, client: int, count: int, acked: list[str] | None = None,
               stop: threading.Event | None = None) -> list[int]:
    """One keep-alive client posting `count` fresh records; returns the statuses."""
    annotator = list(World.ANNOTATORS)[client % 3]
    conn = server.connect()
    statuses = []
    try:
        for i in range(count):
            if stop is not None and stop.is_set():
                break
            record = world.record(annotator, i, id=f"c{client}-{i}")
            status, _, _ = server.call("POST", "/api/submissions", record, token=world.tokens[annotator], conn=conn)
            statuses.append(status)
            if acked is not None and status == 201:
                acked.append(record["id"])
    except (OSError, http.client.HTTPException):
        if stop is None:
            raise
    finally:
        conn.close()
    return statuses


@pytest.mark.slow
def test_load_32_clients_x_100_each_stored_exactly_once(world: World) -> None:
    server = Server(world)
    try:
        with ThreadPoolExecutor(32) as pool:
            results = list(pool.map(lambda c: _post_many(server, world, c, 100), range(32)))
    finally:
        assert server.stop() == 0
    assert all(s == 201 for statuses in results for s in statuses) and sum(map(len, results)) == 3200
    stored = world.stored()  # every line parses
    ids = [r["id"] for r in stored]
    assert len(ids) == 3200 and set(ids) == {f"c{c}-{i}" for c in range(32) for i in range(100)}
    assert all(r["annotator"] == list(World.ANNOTATORS)[int(r["id"][1:].split("-")[0]) % 3] for r in stored)


@pytest.mark.slow
def test_kill_9_during_load_then_restart_keeps_every_acknowledged_answer(world: World) -> None:
    server = Server(world)
    acked: list[str] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_post_many, args=(server, world, c, 10_000, acked, stop)) for c in range(16)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(acked) < 300 and time.monotonic() < deadline:
        time.sleep(0.02)
    server.kill()
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) >= 300
    # The kill may or may not have cut a line; make sure a torn tail is there to handle.
    with world.store.open("ab") as fh:
        fh.write(b'{"id": "torn-by-crash", "stage": "annot')
    restarted = Server(world, log_name="restart.log")
    try:
        torn = sorted(world.store.parent.glob("submissions.jsonl.torn-*"))
        assert torn and torn[-1].read_bytes().endswith(b'"torn-by-crash", "stage": "annot')
        assert "torn last line" in restarted.log() and str(torn[-1]) in restarted.log()
        stored_ids = {r["id"] for r in world.stored()}  # every line parses
        assert set(acked) <= stored_ids
        assert "torn-by-crash" not in stored_ids
        after = world.record("bob", 7)
        assert restarted.submit(after, annotator="bob")[0] == 201
        assert world.stored()[-1]["id"] == after["id"]
        client, index = (int(n) for n in acked[0][1:].split("-"))
        annotator = list(World.ANNOTATORS)[client % 3]
        retry = world.record(annotator, index, id=acked[0])  # the very record acknowledged before the kill
        status, body = restarted.submit(retry, annotator=annotator)
        assert (status, body["id"], body["status"]) == (200, acked[0], "duplicate")
    finally:
        assert restarted.stop() == 0
    assert len({r["id"] for r in world.stored()}) == len(world.stored())


def test_two_collectors_on_one_store_write_each_id_once(world: World) -> None:
    first, second = Server(world, log_name="a.log"), Server(world, log_name="b.log")
    records = [(who, world.record(who, i, id=f"shared-{i}")) for i in range(60) for who in [("alice", "bob")[i % 2]]]

    def send(job: tuple[Server, str, dict[str, Any]]) -> int:
        srv, annotator, record = job
        return srv.submit(record, annotator=annotator)[0]

    try:
        jobs = [(srv, who, r) for who, r in records for srv in (first, second)]  # each id to both processes
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(send, jobs))
    finally:
        assert first.stop() == 0 and second.stop(signal.SIGINT) == 0
    assert "stopped" in first.log() and "stopped" in second.log()
    assert statuses.count(201) == 60 and statuses.count(200) == 60
    assert sorted(r["id"] for r in world.stored()) == sorted(r["id"] for _, r in records)


# --- the command line -----------------------------------------------------------------------------------------

def test_cli_refuses_bad_inputs_with_one_sentence(world: World, tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "multilabelfy.collector.cli", *args], cwd=REPO,
                              capture_output=True, text=True, timeout=30)

    base = ["--site", str(world.site), "--private", str(world.private), "--store", str(world.store)]
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run("--site", str(empty), *base[2:])
    assert result.returncode == 2 and "manifest.json is missing" in result.stderr and "Traceback" not in result.stderr
    result = run(*base, "--allow-origin", "https://user.github.io/project")
    assert result.returncode == 2 and "use https://user.github.io" in result.stderr
    result = run(*base[:4], "--store", str(tmp_path / "no" / "such" / "s.jsonl"))
    assert result.returncode == 2 and "does not exist" in result.stderr
    assert not world.store.exists()
    result = run(*base, "--port", "0", "--host", "999.1.1.1")
    assert result.returncode == 2 and "--host '999.1.1.1'" in result.stderr and "Traceback" not in result.stderr


def test_import_blocker_really_blocks() -> None:
    """The guard the servers above run under is real: numpy is unimportable there."""
    probe = LAUNCH.split("from multilabelfy")[0] + "import numpy\n"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "blocked for the test: numpy" in result.stderr
    env_check = subprocess.run([sys.executable, "-c", LAUNCH.split("from multilabelfy")[0] +
                                "import multilabelfy.collector.app, multilabelfy.collector.cli\n"
                                "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                                f"{HEAVY!r}))"], capture_output=True, text=True, timeout=30, cwd=REPO)
    assert env_check.returncode == 0 and env_check.stdout.strip() == "[]", env_check.stderr
