"""Who annotates what, and the private folder: batches, assignments, secret links, tokens.

Everything here lands in PRIVATE_DIR (never published, never in git): `links.csv` with
one secret link per (annotator, stage, batch), the collector's `tokens.json` (hashes
only), `admin_token.txt`, `assignments.json`, `images.csv` and `build.json`. Issuing links
only ever appends: a grant that already has a link keeps its token, so re-running a build
or adding the refinement stage never locks anybody out.
"""
from __future__ import annotations

import csv
import io
import json
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multilabelfy.collector import formats
from multilabelfy.collector.clitools import UserError
from multilabelfy.build.site import write_if_changed

LINK_COLUMNS = ("annotator", "stage", "batch", "url")
ASSIGNMENTS_FILE = "assignments.json"
IMAGES_FILE = "images.csv"
BUILD_FILE = "build.json"
ADMIN_NAME = "admin"


@dataclass(frozen=True)
class LinkRow:
    annotator: str
    stage: str
    batch: int
    url: str

    @property
    def token(self) -> str:
        return self.url.split("#token=", 1)[1]


# --- batches and assignment ----------------------------------------------------------

def split_batches(keys: Sequence[str], batches: int, *, seed: int = 0, shuffle: bool = True) -> dict[int, list[str]]:
    """Batch number (from 1) -> image keys: sizes differ by at most one, the same on every run.

    Shuffled (seeded) by default, so that a batch mixes classes and the pages do not show
    one class after another (ImageNetV2 is stored class by class).
    """
    if batches < 1:
        raise UserError("--batches must be at least 1")
    if batches > len(keys):
        raise UserError(f"--batches {batches} is more than the {len(keys)} images")
    order = list(keys)
    if shuffle:
        random.Random(f"batches:{seed}").shuffle(order)
    size, extra = divmod(len(order), batches)
    out, start = {}, 0
    for b in range(batches):
        end = start + size + (1 if b < extra else 0)
        out[b + 1] = order[start:end]
        start = end
    return out


def assign_annotators(annotators: Sequence[str], batches: int, per_batch: int) -> dict[int, list[str]]:
    """Batch -> its annotators, round-robin: nobody twice in a batch, loads differ by at most one."""
    if not annotators:
        raise UserError("--annotators names nobody")
    if per_batch > len(annotators):
        raise UserError(f"--per-batch {per_batch} needs at least {per_batch} annotators, --annotators names "
                        f"{len(annotators)}")
    n = len(annotators)
    if batches * per_batch < n:
        idle = ", ".join(annotators[batches * per_batch:])
        raise UserError(f"--batches {batches} x --per-batch {per_batch} gives {batches * per_batch} places for "
                        f"{n} annotators: {idle} would get nothing; raise --batches or --per-batch")
    return {b + 1: [annotators[(b * per_batch + j) % n] for j in range(per_batch)] for b in range(batches)}


# --- private files ----------------------------------------------------------------------

def prepare_private_dir(private_dir: Path, site_dir: Path | None = None) -> Path:
    """Create PRIVATE_DIR (owner-only) and refuse one inside the public site or vice versa."""
    private_dir = Path(private_dir).expanduser()
    if site_dir is not None:
        a, b = private_dir.resolve(), Path(site_dir).expanduser().resolve()
        if a == b or b in a.parents or a in b.parents:
            raise UserError(f"--private {str(private_dir)!r} and the site {str(site_dir)!r} must be separate folders "
                            "(secrets must never be published)")
    private_dir.mkdir(parents=True, exist_ok=True)
    try:
        os.chmod(private_dir, 0o700)
    except OSError:
        pass
    return private_dir


def _write_private(path: Path, text: str) -> bool:
    written = write_if_changed(path, text)
    try:
        os.chmod(path, 0o600)
    except OSError:
        pass
    return written


def link_url(site_url: str, stage: str, batch: int, token: str) -> str:
    """The batch page with the token in the fragment (never sent to servers or in Referer headers)."""
    prefix = site_url.rstrip("/") + "/" if site_url else ""
    return f"{prefix}{stage}/{batch}/index.html#token={token}"


def read_links(private_dir: Path) -> list[LinkRow]:
    path = Path(private_dir) / formats.LINKS_FILE
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != LINK_COLUMNS:
            raise UserError(f"{path} does not have the columns {','.join(LINK_COLUMNS)}; move it away or fix it")
        try:
            return [LinkRow(r["annotator"], r["stage"], int(r["batch"]), r["url"]) for r in reader]
        except (TypeError, ValueError):
            raise UserError(f"{path} has a damaged row; fix it (tokens.json still holds every issued token)") from None


def _links_text(rows: Iterable[LinkRow]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(LINK_COLUMNS)
    for r in rows:
        writer.writerow([r.annotator, r.stage, r.batch, r.url])
    return buffer.getvalue()


def _load_grants(private_dir: Path) -> dict[str, formats.Grant]:
    path = Path(private_dir) / formats.TOKENS_FILE
    if not path.exists():
        return {}
    try:
        return formats.load_tokens(private_dir)
    except (ValueError, KeyError) as exc:
        raise UserError(f"{path} cannot be read ({exc}); it holds every issued token, so fix it rather than "
                        "delete it") from None


def _save_grants(private_dir: Path, grants: dict[str, formats.Grant]) -> None:
    path = Path(private_dir) / formats.TOKENS_FILE
    if path.exists() and formats.load_tokens(private_dir) == grants:
        return
    formats.save_tokens(private_dir, grants)


def issue_links(private_dir: Path, grants: Iterable[tuple[str, str, int]], site_url: str = "") -> list[LinkRow]:
    """A secret link per (annotator, stage, batch), in the order asked; only new grants get new tokens.

    Existing links keep their tokens (their URL follows a changed `site_url`); tokens.json
    gains the new hashes and keeps every old one, so nobody's link stops working.
    """
    private_dir = Path(private_dir)
    wanted = []
    for annotator, stage, batch in grants:
        if stage not in formats.STAGES:
            raise UserError(f"unknown stage {stage!r}")
        if not annotator or any(ch in annotator for ch in ",\n\r"):
            raise UserError(f"annotator name {annotator!r} is empty or holds a comma or line break")
        wanted.append((annotator, stage, int(batch)))
    rows = read_links(private_dir)
    by_grant = {(r.annotator, r.stage, r.batch): r for r in rows}
    tokens = _load_grants(private_dir)
    for grant in wanted:
        if grant not in by_grant:
            row = LinkRow(*grant, url=link_url(site_url, grant[1], grant[2], formats.new_token()))
            rows.append(row)
            by_grant[grant] = row
    updated = []
    for r in rows:  # a changed --site-url moves existing links, tokens kept
        url = link_url(site_url, r.stage, r.batch, r.token)
        updated.append(LinkRow(r.annotator, r.stage, r.batch, url))
        tokens.setdefault(formats.token_hash(r.token), formats.Grant(r.annotator, r.stage, r.batch))
    # tokens first: a crash in between leaves a harmless hash without a link, never a dead link
    _save_grants(private_dir, tokens)
    _write_private(private_dir / formats.LINKS_FILE, _links_text(updated))
    final = {(r.annotator, r.stage, r.batch): r for r in updated}
    return [final[g] for g in wanted]


def revoke_links(private_dir: Path, stage: str, keep: Iterable[tuple[str, str, int]]) -> list[LinkRow]:
    """Withdraw the links of `stage` that are not in `keep` (e.g. a refiner dropped by a rebuilt
    refine stage): their rows leave links.csv and their hashes leave tokens.json, so the
    collector (which reloads tokens.json) refuses them. Returns the revoked rows."""
    private_dir = Path(private_dir)
    keep = {(a, s, int(b)) for a, s, b in keep}
    rows = read_links(private_dir)
    revoked = [r for r in rows if r.stage == stage and (r.annotator, r.stage, r.batch) not in keep]
    if not revoked:
        return []
    tokens = _load_grants(private_dir)
    for r in revoked:
        tokens.pop(formats.token_hash(r.token), None)
    # links first: a crash in between leaves a hash without a link (refused by nobody), never
    # a listed link that silently stopped working
    _write_private(private_dir / formats.LINKS_FILE, _links_text(r for r in rows if r not in revoked))
    _save_grants(private_dir, tokens)
    return revoked


def ensure_admin_token(private_dir: Path) -> str:
    """The admin's token (for the collector's /api/progress): created once, then kept."""
    private_dir = Path(private_dir)
    path = private_dir / formats.ADMIN_TOKEN_FILE
    token = path.read_text(encoding="utf-8").strip() if path.exists() else ""
    if not token:
        token = formats.new_token()
        _write_private(path, token + "\n")
    grants = _load_grants(private_dir)
    if formats.token_hash(token) not in grants:
        grants[formats.token_hash(token)] = formats.Grant(ADMIN_NAME, admin=True)
        _save_grants(private_dir, grants)
    return token


def load_assignments(private_dir: Path) -> dict[str, dict[int, list[str]]]:
    path = Path(private_dir) / ASSIGNMENTS_FILE
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {stage: {int(b): list(names) for b, names in batches.items()} for stage, batches in data.items()}


def save_assignments(private_dir: Path, stage: str, assignments: dict[int, list[str]]) -> None:
    """Replace one stage in assignments.json, keeping the others."""
    data = load_assignments(private_dir)
    data[stage] = {int(b): list(names) for b, names in assignments.items()}
    text = json.dumps({s: {str(b): n for b, n in sorted(bs.items())} for s, bs in data.items()}, indent=1) + "\n"
    _write_private(Path(private_dir) / ASSIGNMENTS_FILE, text)


def save_images_csv(private_dir: Path, samples: Iterable[tuple[str, int]]) -> None:
    """`images.csv`: key,label of every image of the site, dataset order (analysis needs the originals)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("key", "label"))
    writer.writerows(samples)
    _write_private(Path(private_dir) / IMAGES_FILE, buffer.getvalue())


def save_build_settings(private_dir: Path, settings: dict[str, Any]) -> None:
    """`build.json`: what the build used (paths, options), so refinement renders pages the same way."""
    _write_private(Path(private_dir) / BUILD_FILE, json.dumps(settings, indent=1, sort_keys=True) + "\n")


def load_build_settings(private_dir: Path) -> dict[str, Any]:
    path = Path(private_dir) / BUILD_FILE
    if not path.exists():
        raise UserError(f"{path} does not exist: run `multilabelfy-build pages` with this --private folder first")
    return json.loads(path.read_text(encoding="utf-8"))
