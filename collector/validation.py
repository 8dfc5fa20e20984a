"""Who may send what: tokens, the site manifest, and strict checks of a submission.

Every check raises `Rejection(status, message)`; the app answers it as a 4xx JSON
`{"error": message}` and stores nothing. The field names, types and limits come from
`formats` (the single home of the record's contract); this module only enforces them
against the current manifest and the token's grant.
"""
from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from multilabelfy.collector import formats
from multilabelfy.collector.formats import Grant, Manifest

log = logging.getLogger("multilabelfy.collector")


class Rejection(Exception):
    """A request the collector refuses: HTTP status and one sentence for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def show(value: Any, limit: int = 60) -> str:
    """A user-supplied value for an error message: repr'd (no newlines) and cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- the manifest and the tokens, reloaded when they change ------------------------------

class _Watched:
    """One file, parsed again whenever its mtime or size changes; a bad new version is
    logged and the last good one kept, so a half-edited file never stops the collector."""

    def __init__(self, path: Path, load: Callable[[], Any]) -> None:
        self.path = path
        self._load = load
        self._stamp: tuple[int, int] | None = None
        self.value = self._reload(initial=True)

    def _stat(self) -> tuple[int, int]:
        st = os.stat(self.path)
        return st.st_mtime_ns, st.st_size

    def _reload(self, initial: bool = False) -> Any:
        stamp = self._stat()
        try:
            value = self._load()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if initial:
                raise
            log.error("could not reload %s (%s); keeping the previous version", self.path, exc)
            self._stamp = stamp
            return self.value
        if not initial:
            log.info("reloaded %s", self.path)
        self._stamp = stamp
        return value

    def current(self) -> Any:
        try:
            stamp = self._stat()
        except OSError:
            return self.value
        if stamp != self._stamp:
            self.value = self._reload()
        return self.value


class Sources:
    """The manifest (SITE_DIR) and the token grants (PRIVATE_DIR), always the current ones.

    Checked on every request (two `stat` calls), so adding the refine stage or new
    annotators needs no restart.
    """

    def __init__(self, site_dir: Path, private_dir: Path) -> None:
        self._lock = threading.Lock()
        self._manifest = _Watched(Path(site_dir) / formats.MANIFEST_FILE,
                                  lambda: formats.load_manifest(site_dir))
        self._tokens = _Watched(Path(private_dir) / formats.TOKENS_FILE,
                                lambda: formats.load_tokens(private_dir))

    @property
    def manifest(self) -> Manifest:
        with self._lock:
            return self._manifest.current()

    @property
    def tokens(self) -> dict[str, Grant]:
        with self._lock:
            return self._tokens.current()


# --- the token ------------------------------------------------------------------------------

def grant_for(authorization: str | None, tokens: dict[str, Grant]) -> Grant:
    """The grant of `Authorization: Bearer <token>`; only the token's hash is looked up."""
    if not authorization:
        raise Rejection(401, "missing Authorization header: open the page from your personal link")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Rejection(401, "the Authorization header must be 'Bearer <token>'")
    grant = tokens.get(formats.token_hash(token))
    if grant is None:
        raise Rejection(401, "unknown token: open the page from your personal link")
    return grant


def require_admin(grant: Grant) -> None:
    if not grant.admin:
        raise Rejection(403, "this endpoint needs the admin token")


# --- the body --------------------------------------------------------------------------------

def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"field {show(key)} appears twice")
        out[key] = value
    return out


def parse_body(raw: bytes) -> dict[str, Any]:
    """The JSON object of a request body (UTF-8, no NaN/Infinity, no repeated keys)."""
    if not raw.strip():
        raise Rejection(400, "empty body: send the record as a JSON object")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constants,
                          object_pairs_hook=_unique_keys)
    except UnicodeDecodeError:
        raise Rejection(400, "the body is not UTF-8") from None
    except ValueError as exc:
        raise Rejection(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Rejection(400, "the body must be a JSON object")
    return data


# --- the record --------------------------------------------------------------------------------

def _type_ok(value: Any, expected: type | tuple[type, ...]) -> bool:
    # bool is an int in Python but not a batch number or a duration in JSON.
    if isinstance(value, bool) and bool not in (expected if isinstance(expected, tuple) else (expected,)):
        return False
    return isinstance(value, expected)


def _type_name(expected: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "a whole number", float: "a number", bool: "true or false",
             list: "a list", type(None): "null"}
    types = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(names.get(t, t.__name__) for t in types)


def _check_fields(body: dict[str, Any]) -> None:
    known = {**formats.RECORD_REQUIRED, **formats.RECORD_OPTIONAL}
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise Rejection(400, f"unknown field {show(unknown[0])}; known fields: {', '.join(known)}")
    missing = [name for name in formats.RECORD_REQUIRED if name not in body]
    if missing:
        raise Rejection(400, f"missing required field {missing[0]!r}")
    for name, expected in known.items():
        if name in body and not _type_ok(body[name], expected):
            raise Rejection(400, f"field {name!r} must be {_type_name(expected)}, not {show(body[name])}")


def _check_scalars(body: dict[str, Any]) -> None:
    rid = body["id"]
    if not rid or len(rid) > formats.MAX_ID_CHARS or not rid.isprintable():
        raise Rejection(400, f"'id' must be 1 to {formats.MAX_ID_CHARS} printable characters")
    if body["stage"] not in formats.STAGES:
        raise Rejection(400, f"'stage' must be one of {', '.join(formats.STAGES)}, not {show(body['stage'])}")
    if len(body.get("comment", "")) > formats.MAX_COMMENT_CHARS:
        raise Rejection(400, f"'comment' is longer than {formats.MAX_COMMENT_CHARS} characters")
    elapsed = body.get("elapsed_ms")
    if elapsed is not None and (not math.isfinite(elapsed) or elapsed < 0):
        raise Rejection(400, "'elapsed_ms' must be a duration of 0 or more milliseconds")
    client_time = body.get("client_time")
    if client_time is not None:
        text = client_time[:-1] + "+00:00" if client_time.endswith("Z") else client_time
        try:
            if len(client_time) > formats.MAX_CLIENT_TIME_CHARS:
                raise ValueError
            datetime.fromisoformat(text)
        except ValueError:
            raise Rejection(400, f"'client_time' must be an ISO 8601 time, not {show(client_time)}") from None
    if len(body.get("shown", "")) > formats.MAX_SHOWN_CHARS:
        raise Rejection(400, "'shown' is too long to be a page version")


def _check_labels(body: dict[str, Any]) -> list[int]:
    labels = body["labels"]
    if any(not _type_ok(label, int) for label in labels):
        raise Rejection(400, "'labels' must be a list of class indices (whole numbers)")
    if len(set(labels)) != len(labels):
        raise Rejection(400, "'labels' lists a class twice")
    none = body.get("none", False)
    reason = body.get("reason")
    if none and labels:
        raise Rejection(422, "'none' (no label fits) excludes choosing labels")
    if not none and not labels:
        raise Rejection(422, "choose at least one label, or send 'none': true (no label fits)")
    if reason is not None:
        if not none:
            raise Rejection(422, "'reason' goes with 'none': true only")
        if reason not in formats.NONE_REASONS:
            raise Rejection(400, f"'reason' must be one of {', '.join(formats.NONE_REASONS)}, not {show(reason)}")
    return labels


@dataclass(frozen=True)
class Checked:
    """A record that passed every check, ready for the store (annotator added)."""
    record: dict[str, Any]
    assigned: int


def check_record(body: dict[str, Any], grant: Grant, manifest: Manifest) -> Checked:
    """Validate a page's record against the token's grant and the manifest.

    Order matters for the messages: form first (400), then who (403), then what the page
    showed (404/409/422).
    """
    _check_fields(body)
    _check_scalars(body)
    labels = _check_labels(body)
    stage, batch, key = body["stage"], body["batch"], body["image"]
    if grant.admin or grant.stage is None:
        raise Rejection(403, "the admin token cannot submit annotations; use an annotator's link")
    if (grant.stage, grant.batch) != (stage, batch):
        raise Rejection(403, f"this link is for {grant.stage} batch {grant.batch}, "
                             f"not {stage} batch {batch}")
    page = manifest.image(stage, batch, key)
    if page is None:
        raise Rejection(404, f"image {show(key)} is not in {stage} batch {batch}")
    if "shown" in body and body["shown"] != page.shown_hash:
        raise Rejection(409, "this page is outdated (it showed other labels than the current site): "
                             "reload the page and answer again")
    not_shown = [label for label in labels if label not in page.shown]
    if not_shown:
        raise Rejection(422, f"label {not_shown[0]} was not shown on this page")
    if stage == "refine" and set(labels) != set(page.prechecked) and not body.get("comment", "").strip():
        raise Rejection(422, "you changed the pre-checked labels: please say why in the comment")
    record = {name: body[name] for name in (*formats.RECORD_REQUIRED, *formats.RECORD_OPTIONAL)
              if name in body}
    record["annotator"] = grant.annotator
    return Checked(record=record, assigned=len(manifest.stages[stage][batch]))
