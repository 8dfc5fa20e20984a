"""The console scripts as a user runs them: help, errors without tracebacks, light imports."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_photo_dataset

BIN = Path(sys.executable).parent


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("script", ["multilabelfy-build", "multilabelfy-collect", "multilabelfy-analyze"])
def test_help(script: str) -> None:
    result = run(script, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout and "--help" in result.stdout


def test_collector_imports_no_heavy_packages() -> None:
    code = ("import sys, multilabelfy.collector, multilabelfy.collector.formats, multilabelfy.collector.clitools;"
            "heavy = [m for m in ('torch', 'timm', 'pandas', 'numpy', 'jinja2') if m in sys.modules];"
            "print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_data_reads_and_reports(tmp_path: Path) -> None:
    write_photo_dataset(tmp_path, ["chelsea.png", "rocket.jpg"])
    result = run("multilabelfy-build", "check-data", "--data", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "2 images in 2 classes" in result.stdout and "2 images decode" in result.stdout


def test_check_data_truncated_image(tmp_path: Path) -> None:
    write_photo_dataset(tmp_path, ["chelsea.png", "rocket.jpg"])
    bad = tmp_path / "812" / "rocket_0.jpeg"
    bad.write_bytes(bad.read_bytes()[:2000])
    result = run("multilabelfy-build", "check-data", "--data", str(tmp_path))
    assert result.returncode == 2
    assert "rocket_0.jpeg" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    skipped = run("multilabelfy-build", "check-data", "--data", str(tmp_path), "--skip-bad")
    assert skipped.returncode == 0, skipped.stderr
    assert "812/rocket_0.jpeg" in skipped.stdout and "1 image decodes" in skipped.stdout


@pytest.mark.parametrize("args, message", [
    (["check-data", "--data", "/no/such/folder"], "does not exist"),
    (["check-data", "--data", ".", "--layout", "zip"], "invalid choice"),
    (["catalog", "--out", "/no/such/dir/c.csv"], "does not exist"),
    (["catalog", "--out", "c.txt"], ".csv or .json"),
    (["nonsense"], "invalid choice"),
])
def test_user_mistakes_are_one_sentence(args: list[str], message: str, tmp_path: Path) -> None:
    result = subprocess.run([str(BIN / "multilabelfy-build"), *args], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_catalog_export(tmp_path: Path) -> None:
    out = tmp_path / "catalog.csv"
    result = run("multilabelfy-build", "catalog", "--out", str(out))
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "index,id,name,synonyms,definition" and len(lines) == 1001
