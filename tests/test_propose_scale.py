"""`propose` at scale: torchrun processes, --shard jobs + merge, and runs that resume."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_propose_helpers import VENV_BIN, propose_args, read_table, run_cli, run_script, same_rows

from conftest import write_photo_dataset

CHUNKED = ["--chunk-size", "2", "--batch-size", "2", "--workers", "0"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos") / "data"
    write_photo_dataset(root, per_class=2)  # 16 real photos -> 8 chunks of 2
    return root


@pytest.fixture(scope="module")
def single(photos, tmp_path_factory):
    """The reference: one process, same chunking."""
    out = tmp_path_factory.mktemp("single") / "p.parquet"
    assert run_cli(propose_args(photos, out, *CHUNKED))[0] == 0
    return read_table(out)[0]


def _computed(stdout: str) -> tuple[int, int]:
    """(images computed by this run, images taken from an earlier run) from the summary line."""
    match = re.search(r"computed (\d+) images.*?(?:; (\d+) taken from an earlier run)?$", stdout, re.M)
    assert match, stdout
    return int(match.group(1)), int(match.group(2) or 0)


def test_torchrun_two_processes_equal_one(photos, single, tmp_path):
    out = tmp_path / "p.parquet"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(VENV_BIN / "torchrun"), "--standalone", "--nproc_per_node=2",
                           "-m", "multilabelfy.build.cli", *propose_args(photos, out, *CHUNKED)],
                          capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "x 2 processes" in done.stderr and _computed(done.stdout) == (16, 0)
    same_rows(single, read_table(out)[0])
    assert not Path(f"{out}.parts").exists()


def test_shards_then_merge_equal_one_run(photos, single, tmp_path, capsys):
    out = tmp_path / "p.parquet"
    assert run_cli(propose_args(photos, out, *CHUNKED, "--shard", "1/3"), capsys)[0] == 0
    code, _, err = run_cli(["merge", "--out", str(out)], capsys)
    assert code == 2 and "not finished yet" in err and not out.exists()
    for shard in ("0/3", "2/3"):
        code, stdout, _ = run_cli(propose_args(photos, out, *CHUNKED, "--shard", shard), capsys)
        assert code == 0 and "merge --out" in stdout and not out.exists()
    code, stdout, _ = run_cli(["merge", "--out", str(out)], capsys)
    assert code == 0 and "Coverage of the original label (16 images)" in stdout
    same_rows(single, read_table(out)[0])


def test_stopped_run_resumes_without_redoing_images(photos, single, tmp_path, capsys):
    out = tmp_path / "p.parquet"
    code, stdout, _ = run_cli(propose_args(photos, out, *CHUNKED, "--max-chunks", "3"), capsys)
    assert code == 0 and _computed(stdout) == (6, 0) and not out.exists()
    code, stdout, _ = run_cli(propose_args(photos, out, *CHUNKED), capsys)
    assert code == 0 and _computed(stdout) == (10, 6)
    same_rows(single, read_table(out)[0])


def test_resume_refuses_other_settings(photos, tmp_path, capsys):
    out = tmp_path / "p.parquet"
    assert run_cli(propose_args(photos, out, *CHUNKED, "--max-chunks", "1"), capsys)[0] == 0
    code, _, err = run_cli(propose_args(photos, out, *CHUNKED, "--seed", "5"), capsys)
    assert code == 2 and "other settings (seed differ)" in err
    assert len(list(Path(f"{out}.parts").glob("chunk-*.parquet"))) == 1  # the finished work is kept


def test_killed_run_resumes(photos, tmp_path):
    """SIGKILL once some chunks are saved; the rerun computes only the rest."""
    out = tmp_path / "p.parquet"
    parts = Path(f"{out}.parts")
    args = propose_args(photos, out, "--chunk-size", "1", "--batch-size", "1", "--workers", "0")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen([str(VENV_BIN / "multilabelfy-build"), *args], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(parts.glob("chunk-*.parquet")):
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    saved = len(list(parts.glob("chunk-*.parquet")))
    assert 1 <= saved < 16 and not out.exists(), f"{saved} chunks saved before the kill"
    done = run_script(args)
    assert done.returncode == 0, done.stderr
    assert _computed(done.stdout) == (16 - saved, saved)
    reference = tmp_path / "reference.parquet"
    assert run_cli(propose_args(photos, reference, *args[args.index("--chunk-size"):]))[0] == 0
    same_rows(read_table(reference)[0], read_table(out)[0])
