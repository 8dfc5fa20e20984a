"""The coverage report against hand computations."""
from __future__ import annotations

import csv
import json

from test_propose_helpers import propose_args, read_table, run_cli

from conftest import write_photo_dataset
from multilabelfy.build.coverage import coverage_report, format_report, report_paths, save_report, smallest_k


def test_figures_for_known_ranks(tmp_path):
    ranks = [1] * 900 + [2] * 50 + [4] * 30 + [30] * 9 + [25] * 10 + [700]
    report = coverage_report(ranks, top_k=20)
    assert report["images"] == 1000
    assert report["within"] == {"1": 0.9, "5": 0.98, "10": 0.98, "20": 0.98}
    # 95%: rank <= 2 covers 950 images; 99%: 990 need rank <= 25; 99.9%: 999 need rank <= 30
    assert report["smallest_k"] == {"0.95": 2, "0.99": 25, "0.999": 30}
    assert report["label_added"] == 20
    bins = {b["ranks"]: b["images"] for b in report["distribution"]}
    assert bins["1"] == 900 and bins["2"] == 50 and bins["4"] == 30 and bins["21-50"] == 19 and bins["501+"] == 1
    assert sum(bins.values()) == 1000
    text = format_report(report)
    assert "K = 20 covers 98.0%" in text and "K = 25 would cover 99%" in text
    json_path, csv_path = save_report(report, tmp_path / "proposals.parquet")
    assert (json_path, csv_path) == report_paths(tmp_path / "proposals.parquet")
    assert json_path.name == "proposals.coverage.json" and json.loads(json_path.read_text()) == report
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["rank"] for r in rows] == ["1", "2", "4", "25", "30", "700"]
    assert float(rows[-1]["cumulative_fraction"]) == 1.0 and float(rows[1]["cumulative_fraction"]) == 0.95


def test_smallest_k_edges():
    assert smallest_k([], 0.95) is None
    assert smallest_k([3], 0.999) == 3
    assert smallest_k([1, 2, 3, 4], 0.75) == 3 and smallest_k([1, 2, 3, 4], 0.76) == 4


def test_report_of_a_propose_run_matches_its_table(tmp_path, capsys):
    root = tmp_path / "data"
    write_photo_dataset(root)
    out = tmp_path / "proposals.parquet"
    assert run_cli(propose_args(root, out, "--workers", "0"))[0] == 0
    printed = capsys.readouterr().out
    table, _ = read_table(out)
    report = json.loads((tmp_path / "proposals.coverage.json").read_text())
    ranks = list(table["label_rank"])
    for k in (1, 5, 10, 20):
        assert report["within"][str(k)] == sum(r <= k for r in ranks) / len(ranks)
    for target in ("0.95", "0.99", "0.999"):
        hand = next(k for k in range(1, 1001) if sum(r <= k for r in ranks) >= float(target) * len(ranks))
        assert report["smallest_k"][target] == hand
    assert report["label_added"] == int(table["label_added"].sum())
    assert format_report(report) in printed
    # the `coverage` command recomputes the same report from the table alone
    (tmp_path / "proposals.coverage.json").unlink()
    assert run_cli(["coverage", "--proposals", str(out)])[0] == 0
    assert json.loads((tmp_path / "proposals.coverage.json").read_text()) == report
