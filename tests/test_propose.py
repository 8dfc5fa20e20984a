"""`propose` on real photos: the table, its metadata, the original label, bad images, weights."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from test_propose_helpers import propose_args, read_table, reference_probs, run_cli, run_script, same_rows

from conftest import write_photo_dataset


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("photos") / "data"
    return root, write_photo_dataset(root, per_class=2)  # 16 real photos


@pytest.fixture(scope="module")
def first_run(photos, tmp_path_factory):
    """The documented command line, run as a user would (console script, fresh process)."""
    root, labels = photos
    out = tmp_path_factory.mktemp("run") / "proposals.parquet"
    done = run_script(propose_args(root, out))  # exactly the documented command line
    assert done.returncode == 0, done.stderr
    frame, metadata = read_table(out)
    return out, frame, metadata, done


def test_command_writes_one_row_per_image_with_k_sorted_softmax_probs(photos, first_run):
    root, labels = photos
    out, frame, metadata, done = first_run
    assert list(frame["key"]) == sorted(labels, key=lambda k: (labels[k], k))  # dataset order
    assert [int(x) for x in frame["label"]] == [labels[k] for k in frame["key"]]
    for classes, probs in zip(frame["classes"], frame["probs"]):
        assert len(classes) == 20 and len(set(classes)) == 20
        assert all(np.diff(probs) <= 0), "probabilities must be in descending order"
    # the same numbers as a plain timm loop: softmax over all 1000 classes, same preprocessing
    reference, config = reference_probs(root, list(frame["key"]))
    ref_p, ref_c = reference.topk(20, dim=1)
    assert [list(c) for c in frame["classes"]] == ref_c.tolist()
    np.testing.assert_allclose(np.stack(frame["probs"]), ref_p.numpy(), rtol=1e-5)
    assert reference.sum(dim=1).allclose(reference.new_ones(1))
    # the run says what it did, loudly about the random weights
    assert "RANDOM weights" in done.stderr and "16 images" in done.stdout
    assert "img/s" in done.stdout


def test_metadata_records_model_weights_and_preprocessing(photos, first_run):
    import timm

    root, _ = photos
    _, _, metadata, _ = first_run
    config = timm.data.resolve_model_data_config(timm.create_model("test_vit"))
    assert metadata["model"] == "test_vit" and metadata["weights"] == "random" and metadata["seed"] == 0
    assert metadata["top_k"] == 20 and metadata["num_classes"] == 1000
    pre = metadata["preprocessing"]
    assert pre["input_size"] == list(config["input_size"]) == [3, 160, 160]  # the model's size, not 224
    assert (pre["crop_pct"], pre["interpolation"]) == (config["crop_pct"], config["interpolation"])
    assert pre["mean"] == list(config["mean"]) and pre["std"] == list(config["std"])
    assert metadata["dataset"] == {"root": str(root), "layout": "imagenetv2"}
    assert metadata["catalog"] == "imagenet-1k" and metadata["created"] and metadata["multilabelfy_version"]
    assert metadata["skipped"] == []


def test_original_label_is_ranked_and_added_when_outside_top_k(photos, first_run, tmp_path, capsys):
    """Labels set to known ranks (1, 7, far below K) through a CSV manifest of the same photos."""
    root, _ = photos
    _, frame, _, _ = first_run
    reference, _ = reference_probs(root, list(frame["key"]))
    order = reference.argsort(dim=1, descending=True)
    wanted_rank = [1, 7, 20, 21, 300, 1000] * 3
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label"])
        for i, key in enumerate(frame["key"]):
            writer.writerow([key, int(order[i, wanted_rank[i] - 1])])
    out = tmp_path / "p.parquet"
    code, _, _ = run_cli(propose_args(manifest, out, "--image-root", str(root), "--workers", "0",
                                      "--batch-size", "16"), capsys)
    assert code == 0
    table, _ = read_table(out)
    for i, row in table.iterrows():
        rank = wanted_rank[i]
        assert row["label_rank"] == rank
        assert bool(row["label_added"]) == (rank > 20)
        assert (int(row["label"]) in list(row["classes"])) == (rank <= 20)
        assert row["label_prob"] == pytest.approx(float(reference[i, row["label"]]), rel=1e-5)
        if rank <= 20:
            assert list(row["classes"]).index(row["label"]) == rank - 1


def test_same_weights_and_data_give_the_same_proposals(photos, first_run, tmp_path, capsys):
    root, _ = photos
    _, frame, _, _ = first_run
    again = tmp_path / "again.parquet"
    assert run_cli(propose_args(root, again, "--workers", "0", "--batch-size", "16"), capsys)[0] == 0
    same_rows(frame, read_table(again)[0])
    other = tmp_path / "other.parquet"
    assert run_cli(propose_args(root, other, "--workers", "0", "--batch-size", "16", "--seed", "1"), capsys)[0] == 0
    other_frame, other_meta = read_table(other)
    assert other_meta["seed"] == 1
    assert [list(c) for c in other_frame["classes"]] != [list(c) for c in frame["classes"]]


def test_safetensors_checkpoint_gives_the_weights_it_holds(photos, first_run, tmp_path, capsys):
    import timm
    import torch
    from safetensors.torch import save_file

    root, _ = photos
    _, frame, _, _ = first_run
    torch.manual_seed(0)
    weights = tmp_path / "test_vit.safetensors"
    save_file(timm.create_model("test_vit").state_dict(), str(weights))
    out = tmp_path / "ckpt.parquet"
    args = ["propose", "--data", str(root), "--model", "test_vit", "--checkpoint", str(weights),
            "--out", str(out), "--workers", "0", "--batch-size", "16"]
    code, _, err = run_cli(args, capsys)
    assert code == 0 and "RANDOM" not in err
    table, metadata = read_table(out)
    same_rows(frame, table)
    assert metadata["weights"] == f"checkpoint:{weights}" and len(metadata["checkpoint_sha256"]) == 64
    # weights of another architecture: one clear sentence, no table
    torch.manual_seed(0)
    foreign = tmp_path / "resnet.safetensors"
    save_file(timm.create_model("test_resnet").state_dict(), str(foreign))
    bad_out = tmp_path / "bad.parquet"
    code, _, err = run_cli([*args[:6], str(foreign), "--out", str(bad_out)], capsys)
    assert code == 2 and "does not fit model 'test_vit'" in err and str(foreign) in err
    assert not bad_out.exists()


def _corrupt_dataset(tmp_path: Path) -> tuple[Path, str]:
    root = tmp_path / "data"
    write_photo_dataset(root, names=["chelsea.png", "coffee.png", "rocket.jpg"])
    good = (root / "281" / "chelsea_0.jpeg").read_bytes()
    broken = root / "281" / "broken.jpeg"
    broken.write_bytes(good[: len(good) // 3])  # a truncated JPEG
    return root, "281/broken.jpeg"


def test_corrupt_image_stops_with_its_name_or_is_skipped_and_listed(tmp_path, capsys):
    root, bad_key = _corrupt_dataset(tmp_path)
    out = tmp_path / "p.parquet"
    code, _, err = run_cli(propose_args(root, out, "--workers", "0"), capsys)
    assert code == 2 and str(root / bad_key) in err and "--skip-bad" in err
    assert not out.exists()
    code, stdout, _ = run_cli(propose_args(root, out, "--workers", "0", "--skip-bad"), capsys)
    assert code == 0
    assert f"{bad_key}:" in stdout and "skipped 1 unreadable" in stdout
    table, metadata = read_table(out)
    assert bad_key not in set(table["key"]) and len(table) == 3
    assert [item["key"] for item in metadata["skipped"]] == [bad_key]


@pytest.mark.parametrize("extra, message", [
    (["--model", "no_such_model"], "is not a timm model name"),
    (["--model", "test_vit.no_such_tag"], "Invalid pretrained tag"),
    (["--top-k", "1001"], "--top-k 1001"),
    (["--out", "proposals.csv"], "use a .parquet file name"),
])
def test_user_mistakes_give_one_clear_sentence(photos, tmp_path, capsys, extra, message):
    root, _ = photos
    args = propose_args(root, tmp_path / "p.parquet", "--workers", "0")
    for option, value in zip(extra[::2], extra[1::2]):
        args[args.index(option) + 1] = value if option != "--out" else str(tmp_path / value)
    code, _, err = run_cli(args, capsys)
    assert code == 2 and message in err and "Traceback" not in err


def test_existing_table_is_not_overwritten_without_asking(photos, tmp_path, capsys):
    root, _ = photos
    out = tmp_path / "p.parquet"
    out.write_bytes(b"precious")
    code, _, err = run_cli(propose_args(root, out, "--workers", "0"), capsys)
    assert code == 2 and "--overwrite" in err and out.read_bytes() == b"precious"


def test_coverage_report_is_saved_beside_the_table(first_run):
    out, frame, _, done = first_run
    report = json.loads(out.with_name("proposals.coverage.json").read_text())
    assert report["images"] == len(frame) and "Coverage of the original label" in done.stdout
    assert out.with_name("proposals.coverage.csv").is_file()


def test_out_folder_is_created_and_unwritable_one_named(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    write_photo_dataset(data, ["chelsea.png", "coffee.png"], max_side=96)
    out = tmp_path / "new" / "nested" / "proposals.parquet"
    code, _, err = run_cli(propose_args(data, out), capsys)
    assert code == 0, err
    assert len(read_table(out)[0]) == 2
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = run_cli(propose_args(data, blocker / "p.parquet"), capsys)
    assert code == 2 and "cannot create folder" in err and "Traceback" not in err


def test_custom_catalog_with_its_own_checkpoint(tmp_path: Path, capsys) -> None:
    """A non-ImageNet dataset: the model's head takes the catalog's class count."""
    import timm
    from safetensors.torch import save_file

    data = tmp_path / "data"
    write_photo_dataset(data, ["chelsea.png", "coffee.png"], max_side=96)
    for old, new in (("281", "0"), ("967", "2")):
        (data / old).rename(data / new)
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("index,id,name\n0,cat,Cat\n1,dog,Dog\n2,cup,Cup\n")
    save_file(timm.create_model("test_vit", num_classes=3).state_dict(), tmp_path / "three.safetensors")
    save_file(timm.create_model("test_vit", num_classes=5).state_dict(), tmp_path / "five.safetensors")
    out = tmp_path / "p.parquet"
    code, _, err = run_cli(["propose", "--data", str(data), "--catalog", str(catalog), "--model", "test_vit",
                            "--checkpoint", str(tmp_path / "three.safetensors"), "--top-k", "3", "--out", str(out)],
                           capsys)
    assert code == 0, err
    frame, meta = read_table(out)
    assert meta["num_classes"] == 3 and all(sorted(c) == [0, 1, 2] for c in frame["classes"])
    code, _, err = run_cli(["propose", "--data", str(data), "--catalog", str(catalog), "--model", "test_vit",
                            "--checkpoint", str(tmp_path / "five.safetensors"), "--top-k", "3",
                            "--out", str(tmp_path / "q.parquet")], capsys)
    assert code == 2 and "size mismatch for head.weight" in err
