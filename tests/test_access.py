"""The private folder: secret links and token hashes are only ever added, never silently replaced."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from multilabelfy.build import access
from multilabelfy.collector import formats
from multilabelfy.collector.clitools import UserError


def test_links_append_and_keep_tokens(tmp_path: Path) -> None:
    first = access.issue_links(tmp_path, [("alice", "annotate", 1), ("bob", "annotate", 1)])
    assert [r.url.split("#")[0] for r in first] == ["annotate/1/index.html"] * 2
    assert first[0].token != first[1].token
    more = access.issue_links(tmp_path, [("bob", "annotate", 1), ("carol", "refine", 2)])
    assert more[0] == first[1], "an existing grant keeps its link"
    rows = access.read_links(tmp_path)
    assert [(r.annotator, r.stage, r.batch) for r in rows] == [
        ("alice", "annotate", 1), ("bob", "annotate", 1), ("carol", "refine", 2)]
    grants = formats.load_tokens(tmp_path)
    assert {formats.token_hash(r.token) for r in rows} <= set(grants)
    assert oct((tmp_path / "links.csv").stat().st_mode & 0o777) == "0o600"


def test_site_url_moves_links_but_keeps_tokens(tmp_path: Path) -> None:
    [old] = access.issue_links(tmp_path, [("alice", "annotate", 1)])
    [new] = access.issue_links(tmp_path, [("alice", "annotate", 1)], site_url="https://lab.github.io/labels/")
    assert new.url == f"https://lab.github.io/labels/annotate/1/index.html#token={old.token}"


def test_lost_token_hash_is_restored_from_links(tmp_path: Path) -> None:
    """If tokens.json lost a hash (edited by hand), issuing links again puts it back."""
    [row] = access.issue_links(tmp_path, [("alice", "annotate", 1)])
    formats.save_tokens(tmp_path, {})
    access.issue_links(tmp_path, [])
    assert formats.token_hash(row.token) in formats.load_tokens(tmp_path)


def test_damaged_files_are_refused_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "links.csv").write_text("who,what\nx,y\n")
    with pytest.raises(UserError, match="columns annotator,stage,batch,url"):
        access.issue_links(tmp_path, [("alice", "annotate", 1)])
    assert (tmp_path / "links.csv").read_text() == "who,what\nx,y\n"
    (tmp_path / "links.csv").unlink()
    (tmp_path / "tokens.json").write_text("{not json")
    with pytest.raises(UserError, match="tokens.json cannot be read"):
        access.issue_links(tmp_path, [("alice", "annotate", 1)])
    assert (tmp_path / "tokens.json").read_text() == "{not json"
    with pytest.raises(UserError, match="unknown stage"):
        access.issue_links(tmp_path, [("alice", "review", 1)])


def test_admin_token_created_once(tmp_path: Path) -> None:
    token = access.ensure_admin_token(tmp_path)
    assert access.ensure_admin_token(tmp_path) == token
    assert formats.load_tokens(tmp_path)[formats.token_hash(token)] == formats.Grant("admin", admin=True)


def test_assignments_merge_stages(tmp_path: Path) -> None:
    access.save_assignments(tmp_path, "annotate", {1: ["alice", "bob"], 2: ["carol", "dave"]})
    access.save_assignments(tmp_path, "refine", {1: ["erin"]})
    data = json.loads((tmp_path / "assignments.json").read_text())
    assert data == {"annotate": {"1": ["alice", "bob"], "2": ["carol", "dave"]}, "refine": {"1": ["erin"]}}
    assert access.load_assignments(tmp_path)["annotate"][2] == ["carol", "dave"]


def test_private_dir_must_not_be_published(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="separate folders"):
        access.prepare_private_dir(tmp_path / "site" / "private", tmp_path / "site")
    with pytest.raises(UserError, match="separate folders"):
        access.prepare_private_dir(tmp_path / "p", tmp_path / "p" / "site")


def test_revoked_links_leave_links_and_tokens(tmp_path: Path) -> None:
    """A rebuilt refine stage withdraws a dropped refiner's link: no row, no token hash."""
    private = tmp_path / "private"
    private.mkdir()
    rows = access.issue_links(private, [("alice", "annotate", 1), ("carol", "refine", 1), ("erin", "refine", 2)])
    carol = next(r for r in rows if r.annotator == "carol")
    revoked = access.revoke_links(private, "refine", keep=[("erin", "refine", 2), ("erin", "refine", 1)])
    assert [r.annotator for r in revoked] == ["carol"]
    grants = formats.load_tokens(private)
    assert formats.token_hash(carol.token) not in grants
    assert {(g.annotator, g.stage) for g in grants.values()} == {("alice", "annotate"), ("erin", "refine")}
    assert {(r.annotator, r.stage) for r in access.read_links(private)} == {("alice", "annotate"), ("erin", "refine")}
    assert access.revoke_links(private, "refine", keep=[("erin", "refine", 2)]) == []
