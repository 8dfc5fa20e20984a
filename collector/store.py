"""The durable submission store: one JSON line per record, never a lost answer.

Guarantees, in the order a request meets them:

- **One writer at a time**, across threads (a `threading.Lock`) and processes (an
  exclusive `fcntl.flock` on `<store>.lock`), so two collectors on one file interleave
  whole lines only.
- **Catch-up before every write**: under the lock the store first reads whatever other
  processes appended since its last look, so the id index (idempotency) and the progress
  counts stay right even with several collectors on one file.
- **Durable before acknowledged**: the line is written with one `write()` on an
  `O_APPEND` descriptor and `fsync`'d before `append` returns, i.e. before the 2xx.
  The fsync happens outside the write lock (group commit): a thread whose line was
  already covered by another thread's fsync returns at once, so concurrent requests
  share one disk flush instead of queueing one flush each.
- **Idempotent**: a record whose id is already stored is not written again; identical
  content is a duplicate (the client retried), different content a conflict.
- **Torn tails are set aside, not dropped**: a last line without its newline that does
  not parse (a crash mid-write) is copied to `<store>.torn-<UTC time>`, reported, and cut
  off, so the next record starts on a clean line; every good line stays where it is.
  Damaged lines in the middle are reported and left in place (`formats.read_store`
  reports them again to the analysis).

Standard library only: the collector must run without torch, numpy or pandas.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger("multilabelfy.collector.store")

_CHUNK = 1 << 20


class StoreError(Exception):
    """The store cannot take a record (disk full, file truncated by someone else)."""


class IdConflict(Exception):
    """A record reuses a stored id with different content."""


@dataclass
class StoreReport:
    """What opening (or catching up with) the store found, for the start-up log."""
    records: int = 0
    bad_lines: list[int] = field(default_factory=list)
    torn_files: list[Path] = field(default_factory=list)


def record_fingerprint(record: dict[str, Any]) -> bytes:
    """What makes two records 'the same submission': everything but the server's clock."""
    body = {k: v for k, v in record.items() if k != "server_time"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                     ensure_ascii=False).encode()).digest()[:16]


def utc_now() -> str:
    """ISO 8601 UTC time with milliseconds, the form of `server_time`."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fsync_dir(path: Path) -> None:
    """Make a new or renamed directory entry durable (a fresh file is lost without it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Store:
    """Append-only JSON-lines store with an id index and per-batch progress."""

    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.fsync = fsync
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._offset = 0            # bytes of the file already indexed
        self._lines = 0             # complete lines already indexed
        self._sync_lock = threading.Lock()
        self._written = 0           # lines this process has written ...
        self._synced = 0            # ... and how many of them are known to be on disk
        self._ids: dict[str, bytes] = {}
        self._progress: dict[tuple[str, int, str], set[str]] = {}
        self.report = StoreReport()

    # --- opening and closing -----------------------------------------------------------

    def open(self) -> StoreReport:
        """Open (creating) the file, index every record, set aside a torn last line."""
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o640)
        if created:
            _fsync_dir(self.path.parent)
        with self._locked():
            self._catch_up()
        return self.report

    def close(self) -> None:
        """Close the descriptors (every acknowledged record is already on disk)."""
        with self._thread_lock:
            for fd in (self._fd, self._lock_fd):
                if fd is not None:
                    os.close(fd)
            self._fd = self._lock_fd = None

    def __enter__(self) -> "Store":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the public operations ---------------------------------------------------------

    def append(self, record: dict[str, Any]) -> bool:
        """Store a validated record durably; False if this exact record is already stored.

        Adds `server_time`. Raises `IdConflict` if the id is stored with other content and
        `StoreError` if the line could not be written (then nothing of it stays).
        """
        fingerprint = record_fingerprint(record)
        with self._locked():
            self._catch_up()
            stored = self._ids.get(record["id"])
            if stored is None:
                line = dict(record, server_time=utc_now())
                data = (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
                self._write(data)
                self._offset += len(data)
                self._lines += 1
                self._written += 1
                sequence = self._written
                self._index(line, fingerprint)
        if stored is not None:
            if stored != fingerprint:
                raise IdConflict(record["id"])
            # The first copy may still await its fsync (here or in another process).
            self._sync(None)
            return False
        self._sync(sequence)
        return True

    def submitted(self, stage: str, batch: int, annotator: str) -> set[str]:
        """Image keys this annotator has stored records for in (stage, batch)."""
        with self._locked():
            self._catch_up()  # include what other collector processes wrote
            return set(self._progress.get((stage, batch, annotator), ()))

    def progress_keys(self) -> list[tuple[str, int, str]]:
        """Every (stage, batch, annotator) that has at least one stored record."""
        with self._locked():
            self._catch_up()
            return list(self._progress)

    @property
    def records(self) -> int:
        """Distinct record ids stored (as of this process' last look at the file)."""
        return len(self._ids)

    # --- internals -----------------------------------------------------------------------

    class _Locked:
        def __init__(self, store: "Store") -> None:
            self.store = store

        def __enter__(self) -> None:
            self.store._thread_lock.acquire()
            if self.store._fd is None:
                self.store._thread_lock.release()
                raise StoreError(f"the store {self.store.path} is closed")
            fcntl.flock(self.store._lock_fd, fcntl.LOCK_EX)

        def __exit__(self, *exc: object) -> None:
            try:
                fcntl.flock(self.store._lock_fd, fcntl.LOCK_UN)
            finally:
                self.store._thread_lock.release()

    def _locked(self) -> "Store._Locked":
        return Store._Locked(self)

    def _sync(self, sequence: int | None) -> None:
        """Make line `sequence` (None: everything written so far) durable.

        One thread flushes at a time; it covers every line written before it started, so
        the threads queued behind it usually find their line already on disk.
        """
        if not self.fsync:
            return
        with self._sync_lock:
            if sequence is not None and self._synced >= sequence:
                return
            target = self._written  # every line up to here has been written
            fd = self._fd
            if fd is None:
                raise StoreError(f"the store {self.path} was closed before the record was flushed")
            try:
                os.fsync(fd)
            except OSError as exc:
                raise StoreError(f"could not flush {self.path} to disk: {exc}") from exc
            self._synced = max(self._synced, target)

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        try:
            written = os.write(self._fd, data)
            if written != len(data):
                raise OSError(f"short write ({written} of {len(data)} bytes)")
        except OSError as exc:
            # Cut off whatever part of the line made it, so the file stays whole lines.
            try:
                os.ftruncate(self._fd, self._offset)
            except OSError:
                pass
            raise StoreError(f"could not write to {self.path}: {exc}") from exc

    def _index(self, record: dict[str, Any], fingerprint: bytes | None = None) -> None:
        rid = record.get("id")
        if isinstance(rid, str):
            self._ids[rid] = fingerprint or record_fingerprint(record)
        try:
            key = (record["stage"], int(record["batch"]), record["annotator"])
            self._progress.setdefault(key, set()).add(record["image"])
        except (KeyError, TypeError, ValueError):
            pass

    def _catch_up(self) -> None:
        """Index what was appended since the last look (at start-up: the whole file)."""
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        if size < self._offset:
            raise StoreError(f"{self.path} shrank from {self._offset} to {size} bytes while the "
                             "collector ran: restore it from a backup and restart the collector")
        pos, line_start, carry = self._offset, self._offset, b""
        while pos < size:
            chunk = os.pread(self._fd, min(_CHUNK, size - pos), pos)
            if not chunk:
                break
            pos += len(chunk)
            parts = (carry + chunk).split(b"\n")
            carry = parts.pop()
            for raw in parts:
                self._lines += 1
                self._index_line(raw)
                line_start += len(raw) + 1
        self._offset = line_start
        if carry:
            self._handle_tail(carry, line_start)
        self.report.records = len(self._ids)

    def _index_line(self, raw: bytes) -> None:
        if not raw.strip():
            return
        try:
            record = json.loads(raw)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError:
            self.report.bad_lines.append(self._lines)
            log.warning("%s line %d is not a JSON object; left in place for the analysis to report",
                        self.path, self._lines)
            return
        self._index(record)

    def _handle_tail(self, tail: bytes, offset: int) -> None:
        """A last line without its newline: finish it if whole, else set it aside."""
        try:
            record = json.loads(tail)
            whole = isinstance(record, dict)
        except ValueError:
            whole = False
        if whole:
            self._write(b"\n")
            os.fsync(self._fd)
            self._offset = offset + len(tail) + 1
            self._lines += 1
            self._index(record)
            log.warning("%s: the last line lacked its newline (a crash at the very end of a write); "
                        "completed it", self.path)
            return
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        aside = self.path.with_name(f"{self.path.name}.torn-{stamp}")
        with aside.open("xb") as fh:
            fh.write(tail)
            fh.flush()
            os.fsync(fh.fileno())
        os.ftruncate(self._fd, offset)
        os.fsync(self._fd)
        _fsync_dir(self.path.parent)
        self._offset = offset
        self.report.torn_files.append(aside)
        log.warning("%s: torn last line (%d bytes at offset %d, line %d: a crash mid-write, never "
                    "acknowledged) moved to %s; all %d complete lines kept",
                    self.path, len(tail), offset, self._lines + 1, aside, self._lines)


class DiscardingStore(Store):
    """Benchmark baseline only: the same checks and JSON encoding as `Store`, no file.

    Lets `benchmarks/bench_collector.py` measure what durability (lock file, write,
    fsync) costs with the very same app; never use it with annotators.
    """

    def open(self) -> StoreReport:
        return self.report

    def close(self) -> None:
        pass

    def _locked(self) -> threading.Lock:  # type: ignore[override]
        return self._thread_lock

    def _catch_up(self) -> None:
        pass

    def _write(self, data: bytes) -> None:
        pass

    def _sync(self, sequence: int | None) -> None:
        pass


__all__ = ["Store", "DiscardingStore", "StoreError", "IdConflict", "StoreReport",
           "record_fingerprint", "utc_now"]
