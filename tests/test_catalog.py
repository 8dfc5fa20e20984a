"""Class catalog: timm's ImageNet-1k and user catalog files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from multilabelfy.build.catalog import imagenet_catalog, load_catalog, save_catalog
from multilabelfy.collector.clitools import UserError


def test_imagenet_catalog_from_timm() -> None:
    catalog = imagenet_catalog()
    assert len(catalog) == 1000
    tench = catalog[0]
    assert (tench.id, tench.name, tench.synonyms) == ("n01440764", "tench", ("Tinca tinca",))
    assert tench.definition.startswith("freshwater dace-like game fish")
    assert catalog.index_of("n02123045") == 281 and catalog[281].name == "tabby"
    assert catalog.ids == sorted(catalog.ids)  # the standard order: sorted WordNet IDs


def test_imagenetv2_release_synonyms_equal_timm_lemmas() -> None:
    """The ImageNetV2 release writes a class's synonyms as timm's lemma string."""
    catalog = imagenet_catalog()
    crane_134, crane_517 = catalog[134], catalog[517]
    assert crane_134.name == crane_517.name == "crane"  # same word, two classes: the id tells them apart
    assert ", ".join((catalog[1].name, *catalog[1].synonyms)) == "goldfish, Carassius auratus"


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_catalog_round_trip(tmp_path: Path, suffix: str) -> None:
    catalog = imagenet_catalog()
    path = tmp_path / f"catalog{suffix}"
    save_catalog(catalog, path)
    again = load_catalog(path)
    assert list(again) == list(catalog)


def test_custom_catalog_validation(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps([{"index": 1, "id": "dog", "name": "Dog"},
                                {"index": 0, "id": "cat", "name": "Cat", "synonyms": ["kitty"]}]))
    catalog = load_catalog(good)
    assert [c.name for c in catalog] == ["Cat", "Dog"] and catalog[0].synonyms == ("kitty",)

    gap = tmp_path / "gap.csv"
    gap.write_text("index,id,name\n0,a,A\n2,c,C\n")
    with pytest.raises(UserError, match="without gaps"):
        load_catalog(gap)
    empty = tmp_path / "empty.csv"
    empty.write_text("index,id,name\n0,a,A\n1,b,  \n")
    with pytest.raises(UserError, match="class 1 has an empty name"):
        load_catalog(empty)
    dup = tmp_path / "dup.csv"
    dup.write_text("index,id,name\n0,a,A\n1,a,B\n")
    with pytest.raises(UserError, match="id 'a' is used by classes 0 and 1"):
        load_catalog(dup)
    with pytest.raises(UserError, match="does not exist"):
        load_catalog(tmp_path / "missing.csv")
