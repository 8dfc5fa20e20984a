"""The durable store on its own: torn tails, damage, idempotency, catching up, locking."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from multilabelfy.collector import formats, store as store_module
from multilabelfy.collector.store import IdConflict, Store, StoreError


def rec(i: int, annotator: str = "alice", **changes: object) -> dict:
    return {"id": f"r{i}", "stage": "annotate", "batch": 1, "image": f"1/img_{i}.jpeg", "labels": [i],
            "annotator": annotator, **changes}


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_append_is_idempotent_and_refuses_a_reused_id(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    with Store(path) as store:
        assert store.append(rec(1)) is True
        assert store.append(rec(1)) is False
        with pytest.raises(IdConflict):
            store.append(rec(1, labels=[2]))
        with pytest.raises(IdConflict):
            store.append(rec(1, annotator="bob"))
        assert store.append(rec(2)) is True
        assert store.submitted("annotate", 1, "alice") == {"1/img_1.jpeg", "1/img_2.jpeg"}
    records, bad = formats.read_store(path)
    assert [r["id"] for r in records] == ["r1", "r2"] and not bad
    assert all(set(r) == {*rec(0), "server_time"} for r in records)
    with Store(path) as reopened:  # the index is rebuilt from the file
        assert reopened.records == 2 and reopened.append(rec(2)) is False


def test_torn_last_line_is_set_aside_and_good_lines_stay(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    with Store(path) as store:
        for i in range(3):
            store.append(rec(i))
    good = path.read_bytes()
    path.write_bytes(good + b'{"id": "r9", "stage": "ann')
    with Store(path) as store:
        report = store.report
        assert report.records == 3 and len(report.torn_files) == 1
        assert report.torn_files[0].read_bytes() == b'{"id": "r9", "stage": "ann'
        assert report.torn_files[0].name.startswith("s.jsonl.torn-")
        assert path.read_bytes() == good
        store.append(rec(9))  # the torn id was never stored, so it is new
    records, bad = formats.read_store(path)
    assert [r["id"] for r in records] == ["r0", "r1", "r2", "r9"] and not bad


def test_a_whole_last_line_without_newline_is_completed_not_dropped(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(rec(1)) + "\n" + json.dumps(rec(2)))
    with Store(path) as store:
        assert store.report.records == 2 and not store.report.torn_files
        store.append(rec(3))
    assert [json.loads(line)["id"] for line in lines(path)] == ["r1", "r2", "r3"]


def test_damage_in_the_middle_is_reported_and_left_in_place(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(rec(1)) + "\n" + "garbage\n" + "[1, 2]\n" + json.dumps(rec(2)) + "\n")
    before = path.read_bytes()
    with Store(path) as store:
        assert store.report.bad_lines == [2, 3] and store.report.records == 2
        assert store.append(rec(2)) is False
    assert path.read_bytes() == before


def test_a_second_store_on_the_same_file_catches_up_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    with Store(path) as first, Store(path) as second:
        assert first.append(rec(1)) is True
        assert second.append(rec(1)) is False  # saw the other writer's line
        assert second.append(rec(2)) is True
        assert first.submitted("annotate", 1, "alice") == {"1/img_1.jpeg", "1/img_2.jpeg"}
        assert first.records == 2 and first.append(rec(2)) is False
    assert len(lines(path)) == 2


def test_the_lock_file_excludes_another_process(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, sys, time\n"
         f"fh = open({str(path) + '.lock'!r}, 'a')\n"
         "fcntl.flock(fh, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(0.6)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with Store(path) as store:  # opening indexes the file under the lock, so it waits too
            store.append(rec(1))
        waited = time.monotonic() - started
    finally:
        holder.wait(timeout=10)
    assert waited > 0.3
    assert len(lines(path)) == 1


def test_a_failed_write_leaves_no_partial_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.jsonl"
    with Store(path) as store:
        store.append(rec(1))
        real_write = os.write

        def half_write(fd: int, data: bytes) -> int:
            return real_write(fd, data[: len(data) // 2])

        monkeypatch.setattr(store_module.os, "write", half_write)
        with pytest.raises(StoreError, match="short write"):
            store.append(rec(2))
        monkeypatch.setattr(store_module.os, "write", real_write)
        assert store.append(rec(2)) is True
    assert [json.loads(line)["id"] for line in lines(path)] == ["r1", "r2"]


def test_every_append_returns_only_after_an_fsync_covering_its_line(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Group commit shares flushes between threads, but never acknowledges before one."""
    path = tmp_path / "s.jsonl"
    flushed: list[int] = []   # file sizes at completed fsyncs of the store
    real_fsync = os.fsync
    with Store(path) as store:
        def spy(fd: int) -> None:
            size = os.fstat(fd).st_size
            real_fsync(fd)
            if fd == store._fd:
                flushed.append(size)

        monkeypatch.setattr(store_module.os, "fsync", spy)
        covered: dict[str, int] = {}

        def writer(t: int) -> None:
            for i in range(25):
                record = rec(1000 * t + i)
                assert store.append(record)
                covered[record["id"]] = max(flushed)  # what was on disk when append returned

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    ends, offset = {}, 0
    for line in path.read_bytes().splitlines(keepends=True):
        offset += len(line)
        ends[json.loads(line)["id"]] = offset
    assert len(ends) == 200 == len(covered)
    assert all(ends[rid] <= covered[rid] for rid in ends)
    assert len(flushed) <= 200  # never more flushes than records (usually far fewer)
