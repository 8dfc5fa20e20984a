"""The contracts between stages, in one place (standard library only).

`docs/formats.md` describes the same files for people; this module is what the code
uses: stage and reason names, the submission record's fields, the site manifest, the
private token file, the store (JSON lines) and its torn-line handling.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# --- stages and reasons -------------------------------------------------------------

STAGES: tuple[str, ...] = ("annotate", "refine")

#: "None of these labels fit": the paper's four categories (Section 4.4), key -> text.
NONE_REASONS: dict[str, str] = {
    "no-valid-proposal": "No valid proposal: the right label is not among those shown",
    "low-resolution": "Low resolution or ambiguous image",
    "needs-expert": "Needs an expert (fine-grained classes)",
    "unusual-object": "Unusual object or viewpoint",
}

# --- submission records ---------------------------------------------------------------

#: Fields the page sends, with their JSON types. `id`, `stage`, `batch`, `image`, `labels`
#: are required; the server adds `annotator` (from the token) and `server_time`.
RECORD_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "id": str, "stage": str, "batch": int, "image": str, "labels": list,
}
RECORD_OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "none": bool, "reason": (str, type(None)), "comment": str, "shown": str,
    "elapsed_ms": (int, float), "client_time": str,
}
RECORD_SERVER_FIELDS: tuple[str, ...] = ("annotator", "server_time")
MAX_COMMENT_CHARS = 2000
MAX_ID_CHARS = 100
MAX_SHOWN_CHARS = 100
MAX_CLIENT_TIME_CHARS = 64
MAX_BODY_BYTES = 64 * 1024


def shown_digest(stage: str, key: str, shown: Iterable[int]) -> str:
    """The page's version of what it showed: a short hash of (stage, image, shown labels).

    The page sends it as the record's `shown`; the collector compares it with the
    manifest, so a record made on an outdated page is refused instead of mis-stored.
    """
    payload = json.dumps([stage, key, [int(i) for i in shown]], separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# --- tokens ---------------------------------------------------------------------------

TOKENS_FILE = "tokens.json"          # in PRIVATE_DIR: token hashes -> who and what
LINKS_FILE = "links.csv"             # in PRIVATE_DIR: annotator,stage,batch,url
ADMIN_TOKEN_FILE = "admin_token.txt"  # in PRIVATE_DIR: the admin's token, for /api/progress
MANIFEST_FILE = "manifest.json"      # in SITE_DIR: public


def new_token() -> str:
    """A fresh secret: 256 bits, URL-safe."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the collector stores instead of a token (tokens are random, so no salt is needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Grant:
    """What one token allows: an annotator's stage and batch, or the admin endpoints."""
    annotator: str
    stage: str | None = None
    batch: int | None = None
    admin: bool = False


def load_tokens(private_dir: Path) -> dict[str, Grant]:
    """Token hash -> grant, from `PRIVATE_DIR/tokens.json`."""
    path = Path(private_dir) / TOKENS_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    return {h: Grant(annotator=g["annotator"], stage=g.get("stage"), batch=g.get("batch"),
                     admin=bool(g.get("admin", False)))
            for h, g in data["tokens"].items()}


def save_tokens(private_dir: Path, grants: dict[str, Grant]) -> None:
    """Write the token-hash file atomically (the collector may be reading it)."""
    data = {"version": 1, "tokens": {h: {k: v for k, v in vars(g).items() if v is not None}
                                     for h, g in sorted(grants.items())}}
    atomic_write_text(Path(private_dir) / TOKENS_FILE, json.dumps(data, indent=1) + "\n")


# --- the site manifest ------------------------------------------------------------------

@dataclass(frozen=True)
class ManifestImage:
    """One page: which image, where its page is, which class indices it shows."""
    key: str
    page: str
    shown: tuple[int, ...]
    prechecked: tuple[int, ...] = ()
    shown_hash: str = ""


@dataclass
class Manifest:
    """`SITE_DIR/manifest.json`: stage -> batch number -> pages in order.

    JSON form: {"version": 1, "num_classes": N, "stages": {"annotate": {"batches":
    [{"batch": 1, "images": [{"key", "page", "shown", "prechecked"?, "shown_hash"}]}]}}}
    """
    num_classes: int
    stages: dict[str, dict[int, list[ManifestImage]]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def image(self, stage: str, batch: int, key: str) -> ManifestImage | None:
        """The page for (stage, batch, image), or None if the manifest has no such page."""
        index = self._index().get((stage, batch))
        return None if index is None else index.get(key)

    def _index(self) -> dict[tuple[str, int], dict[str, ManifestImage]]:
        cached = self.extra.get("_index")
        if cached is None:
            cached = {(s, b): {im.key: im for im in images}
                      for s, batches in self.stages.items() for b, images in batches.items()}
            self.extra["_index"] = cached
        return cached

    def to_json(self) -> dict[str, Any]:
        stages = {}
        for stage, batches in self.stages.items():
            stages[stage] = {"batches": [
                {"batch": b, "images": [_image_json(im) for im in images]}
                for b, images in sorted(batches.items())]}
        meta = {k: v for k, v in self.extra.items() if not k.startswith("_")}
        return {"version": 1, "num_classes": self.num_classes, **meta, "stages": stages}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Manifest":
        stages: dict[str, dict[int, list[ManifestImage]]] = {}
        for stage, body in data.get("stages", {}).items():
            if stage not in STAGES:
                raise ValueError(f"unknown stage {stage!r}")
            stages[stage] = {}
            for batch in body["batches"]:
                stages[stage][int(batch["batch"])] = [
                    ManifestImage(key=im["key"], page=im["page"], shown=tuple(int(i) for i in im["shown"]),
                                  prechecked=tuple(int(i) for i in im.get("prechecked", ())),
                                  shown_hash=im.get("shown_hash") or shown_digest(stage, im["key"], im["shown"]))
                    for im in batch["images"]]
        extra = {k: v for k, v in data.items() if k not in ("version", "num_classes", "stages")}
        return cls(num_classes=int(data["num_classes"]), stages=stages, extra=extra)


def _image_json(im: ManifestImage) -> dict[str, Any]:
    out: dict[str, Any] = {"key": im.key, "page": im.page, "shown": list(im.shown)}
    if im.prechecked:
        out["prechecked"] = list(im.prechecked)
    out["shown_hash"] = im.shown_hash
    return out


def load_manifest(site_dir: Path) -> Manifest:
    """Read `SITE_DIR/manifest.json`."""
    path = Path(site_dir) / MANIFEST_FILE
    return Manifest.from_json(json.loads(path.read_text(encoding="utf-8")))


def manifest_text(manifest: Manifest) -> str:
    """The manifest's file content: compact JSON, one stage per line (it lists every page:
    1.28 M at ImageNet scale, where indenting would triple its size and reading time)."""
    data = manifest.to_json()
    stages = data.pop("stages")
    head = json.dumps(data, separators=(",", ":"))[:-1]
    body = ",\n".join(f"{json.dumps(stage)}:{json.dumps(value, separators=(',', ':'))}"
                      for stage, value in stages.items())
    return f'{head},"stages":{{\n{body}\n}}}}\n'


def save_manifest(site_dir: Path, manifest: Manifest) -> None:
    """Write `SITE_DIR/manifest.json` atomically."""
    atomic_write_text(Path(site_dir) / MANIFEST_FILE, manifest_text(manifest))


# --- the store: one JSON record per line ------------------------------------------------

@dataclass(frozen=True)
class BadLine:
    """A line of the store that is not a JSON object (a torn write, or damage)."""
    number: int
    offset: int
    text: str


def read_store(path: Path) -> tuple[list[dict[str, Any]], list[BadLine]]:
    """All records of a JSON-lines store, in file order, and the lines that do not parse.

    Bad lines are returned, never silently dropped, so the caller can report them.
    """
    records: list[dict[str, Any]] = []
    bad: list[BadLine] = []
    path = Path(path)
    if not path.exists():
        return records, bad
    offset = 0
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            line = raw.strip()
            if line:
                try:
                    record = json.loads(line)
                    if not isinstance(record, dict):
                        raise ValueError("not an object")
                    records.append(record)
                except ValueError:
                    bad.append(BadLine(number, offset, raw.decode("utf-8", "replace")))
            offset += len(raw)
    return records, bad


def latest_records(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The record that counts for each (stage, image, annotator): the last one stored."""
    latest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for record in records:
        latest[(record["stage"], record["image"], record["annotator"])] = record
    return latest


# --- small file helpers -------------------------------------------------------------------

def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so that readers see the old or the new content, never half of it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def iter_jsonl(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Parse JSON lines, skipping blank ones (for tests and tools)."""
    for line in lines:
        if line.strip():
            yield json.loads(line)
