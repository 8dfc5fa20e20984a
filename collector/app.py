"""The Bottle app: the API routes, CORS, the optional static site, one log line per request.

`create_app` wires the pieces (sources of truth from `validation`, the durable `store`)
into a WSGI callable; `cli.py` serves it with waitress. Nothing here imports more than
Bottle and the standard library.
"""
from __future__ import annotations

import functools
import logging
import mimetypes
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import bottle
from bottle import request, response

from multilabelfy.collector import formats
from multilabelfy.collector.store import IdConflict, Store, StoreError
from multilabelfy.collector.validation import (Rejection, Sources, check_record, grant_for, parse_body,
                                               require_admin)

log = logging.getLogger("multilabelfy.collector")
access_log = logging.getLogger("multilabelfy.collector.access")

REASON_KEY = "multilabelfy.reason"  # environ key: why a request was refused, for the log
NOTE_KEY = "multilabelfy.note"      # environ key: who/what was stored, for the log
PREFLIGHT_MAX_AGE = 600

#: Content types the site uses, fixed here so they do not depend on the host's mime.types.
CONTENT_TYPES: dict[str, str] = {
    ".html": "text/html", ".htm": "text/html", ".css": "text/css", ".js": "text/javascript",
    ".mjs": "text/javascript", ".json": "application/json", ".txt": "text/plain",
    ".csv": "text/csv", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
    ".gif": "image/gif", ".webp": "image/webp", ".svg": "image/svg+xml", ".ico": "image/x-icon",
    ".woff": "font/woff", ".woff2": "font/woff2", ".map": "application/json",
}
#: Files with secrets in them are never served, wherever they lie.
SECRET_NAMES = frozenset({formats.TOKENS_FILE, formats.LINKS_FILE, formats.ADMIN_TOKEN_FILE})
_ENCODED_SEPARATORS = re.compile(r"%(2f|5c|2e|00)", re.IGNORECASE)


@dataclass
class CollectorConfig:
    """Where the collector reads and writes, and whom it answers."""
    site_dir: Path
    private_dir: Path
    store_path: Path
    serve_site: bool = False
    allow_origins: tuple[str, ...] = ()
    extra_denied: tuple[Path, ...] = field(default_factory=tuple)


def content_type(path: str) -> str:
    """The Content-Type of a site file, by extension."""
    ext = os.path.splitext(path)[1].lower()
    return CONTENT_TYPES.get(ext) or mimetypes.guess_type(path)[0] or "application/octet-stream"


def _is_within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class SiteFiles:
    """Resolves a URL path to a file of SITE_DIR, or None; refuses every way out.

    Refused: `..` and `.` segments (plain or percent-encoded), encoded slashes and
    backslashes, NUL, hidden files, symlinks whose target lies outside the site,
    anything inside PRIVATE_DIR, the store and its companions, and secret file names.
    """

    def __init__(self, site_dir: Path, denied: Iterable[Path], store_path: Path) -> None:
        self.root = os.path.realpath(site_dir)
        self.denied = [os.path.realpath(p) for p in denied]
        self.store_prefix = os.path.realpath(store_path)

    def resolve(self, raw_uri: str, path: str) -> str | None:
        raw_path = raw_uri.split("?", 1)[0]
        if _ENCODED_SEPARATORS.search(raw_path) or "\\" in path or "\x00" in path:
            return None
        parts = [p for p in unquote(path).split("/") if p]
        if any(p in (".", "..") or p.startswith(".") for p in parts):
            return None
        if parts and parts[-1] in SECRET_NAMES:
            return None
        full = os.path.realpath(os.path.join(self.root, *parts))
        if os.path.isdir(full):
            full = os.path.join(full, "index.html")
        if not _is_within(full, self.root) or not os.path.isfile(full):
            return None
        if (any(_is_within(full, d) for d in self.denied) or full == self.store_prefix
                or full.startswith(self.store_prefix + ".")):  # the store, its lock and torn files
            return None
        return full


def create_app(config: CollectorConfig, store: Store) -> Callable:
    """The WSGI app: Bottle routes wrapped in the per-request access log."""
    sources = Sources(config.site_dir, config.private_dir)
    allowed = frozenset(config.allow_origins)
    app = bottle.Bottle(catchall=True)

    def cors() -> None:
        """Echo an allowed cross-site Origin; refuse a foreign one (a browser-borne request).

        Same-origin pages (--serve-site) are recognised by host alone, because behind a
        TLS proxy the browser says https:// while the collector itself hears http://.
        """
        response.set_header("Vary", "Origin")
        origin = request.get_header("Origin")
        if not origin:
            return
        if origin in allowed:
            response.set_header("Access-Control-Allow-Origin", origin)
        elif urlsplit(origin).netloc.lower() != request.environ.get("HTTP_HOST", "").lower():
            raise Rejection(403, f"origin {origin} is not allowed (start the collector with --allow-origin)")

    def api(handler: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        """Answer every refusal and failure as JSON {"error": ...} with its status."""
        @functools.wraps(handler)
        def wrapper(*args: Any, **kwargs: Any) -> dict[str, Any]:
            response.set_header("Cache-Control", "no-store")
            try:
                cors()
                return handler(*args, **kwargs)
            except Rejection as exc:
                request.environ[REASON_KEY] = exc.message
                response.status = exc.status
                if exc.status == 401:
                    response.set_header("WWW-Authenticate", "Bearer")
                return {"error": exc.message}
            except StoreError as exc:
                log.error("store failure: %s", exc)
                request.environ[REASON_KEY] = f"store failure: {exc}"
                response.status = 503
                return {"error": "the collector could not store the record; nothing was stored, try again later"}
        return wrapper

    def read_body() -> bytes:
        if not (request.content_type or "").lower().startswith("application/json"):
            raise Rejection(415, "send the record with Content-Type: application/json")
        if request.content_length > formats.MAX_BODY_BYTES:
            raise Rejection(413, f"the body is larger than {formats.MAX_BODY_BYTES} bytes")
        raw = request.environ["wsgi.input"].read(formats.MAX_BODY_BYTES + 1)
        if len(raw) > formats.MAX_BODY_BYTES:
            raise Rejection(413, f"the body is larger than {formats.MAX_BODY_BYTES} bytes")
        return raw

    @app.post("/api/submissions")
    @api
    def submit() -> dict[str, Any]:
        grant = grant_for(request.get_header("Authorization"), sources.tokens)
        checked = check_record(parse_body(read_body()), grant, sources.manifest)
        record = checked.record
        try:
            created = store.append(record)
        except IdConflict:
            raise Rejection(409, f"id {record['id']!r} is already stored with different content; "
                                 "make a new id for a new answer") from None
        response.status = 201 if created else 200
        submitted = store.submitted(record["stage"], record["batch"], grant.annotator)
        request.environ[NOTE_KEY] = (f"{'stored' if created else 'duplicate'} annotator={grant.annotator} "
                                     f"{record['stage']}/{record['batch']} id={record['id']!r}")
        return {"id": record["id"], "status": "stored" if created else "duplicate",
                "submitted": len(submitted), "assigned": checked.assigned}

    @app.get("/api/health")
    @api
    def health() -> dict[str, Any]:
        manifest = sources.manifest
        return {"ok": True, "records": store.records,
                "stages": {s: sorted(b) for s, b in manifest.stages.items()}}

    @app.get("/api/progress/me")
    @api
    def progress_me() -> dict[str, Any]:
        grant = grant_for(request.get_header("Authorization"), sources.tokens)
        if grant.stage is None or grant.batch is None:
            raise Rejection(403, "this token has no batch of its own; use /api/progress")
        images = sources.manifest.stages.get(grant.stage, {}).get(grant.batch, [])
        keys = {im.key for im in images}
        done = store.submitted(grant.stage, grant.batch, grant.annotator) & keys
        return {"annotator": grant.annotator, "stage": grant.stage, "batch": grant.batch,
                "assigned": len(images), "submitted": sorted(done)}

    @app.get("/api/progress")
    @api
    def progress() -> dict[str, Any]:
        grants = sources.tokens
        require_admin(grant_for(request.get_header("Authorization"), grants))
        manifest = sources.manifest
        granted = {(g.stage, g.batch, g.annotator) for g in grants.values() if g.stage and g.batch is not None}
        rows = []
        for stage, batch, annotator in sorted(granted | set(store.progress_keys()),
                                              key=lambda t: (formats.STAGES.index(t[0]) if t[0] in formats.STAGES
                                                             else 99, t[1], t[2])):
            keys = {im.key for im in manifest.stages.get(stage, {}).get(batch, [])}
            rows.append({"stage": stage, "batch": batch, "annotator": annotator,
                         "assigned": len(keys) if (stage, batch, annotator) in granted else 0,
                         "submitted": len(store.submitted(stage, batch, annotator) & keys)})
        return {"rows": rows, "records": store.records,
                "assigned": sum(r["assigned"] for r in rows), "submitted": sum(r["submitted"] for r in rows)}

    @app.route("/api/<path:path>", method="OPTIONS")
    @api
    def preflight(path: str) -> dict[str, Any]:
        origin = request.get_header("Origin")
        if not origin or origin not in allowed:
            raise Rejection(403, f"origin {origin} is not allowed (start the collector with --allow-origin)")
        response.status = 204
        response.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        response.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type")
        response.set_header("Access-Control-Max-Age", str(PREFLIGHT_MAX_AGE))
        return ""  # type: ignore[return-value]  # 204: no body

    # Every method explicitly, so this is matched before the site's GET catch-all below.
    @app.route("/api/<path:path>", method=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"])
    @api
    def unknown_api(path: str) -> dict[str, Any]:
        raise Rejection(404, f"no such endpoint: {request.method} /api/{path}")

    if config.serve_site:
        denied = (config.private_dir, *config.extra_denied)
        files = SiteFiles(config.site_dir, denied, config.store_path)

        @app.get("/")
        @app.get("/<path:path>")
        def site(path: str = "") -> Any:
            full = files.resolve(request.environ.get("REQUEST_URI", request.environ.get("PATH_INFO", "")),
                                 request.environ.get("PATH_INFO", "/"))
            if full is None:
                request.environ[REASON_KEY] = "not a public file of the site"
                response.status = 404
                response.content_type = "application/json"
                return '{"error": "not found"}'
            if full.endswith(os.sep + "index.html") and path and not path.endswith("/") \
                    and not path.endswith("index.html"):
                # a folder asked for without its slash: its pages' relative links need the slash
                return bottle.redirect(request.script_name + path + "/", 301)
            rel = os.path.relpath(full, files.root)
            answer = bottle.static_file(rel, root=files.root, mimetype=content_type(full))
            answer.set_header("X-Content-Type-Options", "nosniff")
            return answer

    @app.error(404)
    @app.error(405)
    @app.error(500)
    def error_json(err: bottle.HTTPError) -> str:
        response.content_type = "application/json"
        if err.status_code == 500:
            log.error("internal error on %s %s: %s", request.method, request.path, err.traceback)
        request.environ.setdefault(REASON_KEY, err.status_line)
        return bottle.json_dumps({"error": err.status_line})

    return AccessLog(app)


class AccessLog:
    """WSGI middleware: one line per request, with the refusal's reason; never a header."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        status = ["-"]

        def recording_start(status_line: str, headers: list, exc_info: Any = None) -> Any:
            status[0] = status_line.split(" ", 1)[0]
            return start_response(status_line, headers, exc_info)

        try:
            return self.app(environ, recording_start)
        finally:
            ms = (time.perf_counter() - started) * 1000
            extra = environ.get(REASON_KEY) or environ.get(NOTE_KEY) or ""
            path = environ.get("PATH_INFO", "")
            access_log.info("%s %s %s %s %.1fms%s", environ.get("REMOTE_ADDR", "-"),
                            environ.get("REQUEST_METHOD", "-"), one_line(path), status[0], ms,
                            f" {one_line(extra, 400)}" if extra else "")


def one_line(text: str, limit: int = 200) -> str:
    """Client-supplied text fit for one log line (no control characters, bounded length)."""
    clean = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    return clean if len(clean) <= limit else clean[:limit] + "..."
