"""Stage 4: the final multi-labels, from agreed sets and refiners' answers.

Rules (docs/analysis.md):
- an image whose refinement is complete (every refiner assigned to its refine page
  answered) is `refined`: it keeps each label chosen by at least half of its refiners
  (one refiner: that refiner's set; two: the union; three: 2 of 3). A refiner's answer
  wins over the first stage even where the first stage agreed;
- otherwise an `agreed` image keeps the set its annotators agreed on;
- every other image is `incomplete` (still waiting): listed in `waiting.csv`, and the
  command fails unless `--allow-incomplete`, which writes them with an empty set in
  `real_labels.json` (so ReaL evaluation leaves them out) and leaves them out of
  `refined_labels.json`.

An image left with no label keeps a reason: the most common "none" reason of its
refiners, else of its first-stage annotators (ties in the order of formats.NONE_REASONS).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from multilabelfy.analysis.disagreement import (AGREED, INCOMPLETE, STATUS_DTYPE, Disagreement, StageAnswers,
                                               stage_answers)
from multilabelfy.analysis.inputs import write_csv
from multilabelfy.analysis.labelsets import LabelSets, concat
from multilabelfy.collector import formats

if TYPE_CHECKING:
    import pandas as pd

REFINED = "refined"
FINAL_STATUSES: tuple[str, ...] = (AGREED, REFINED, INCOMPLETE)


@dataclass
class Final:
    """Per dataset image (images.csv order): status, final label set, reason for an empty set."""
    keys: np.ndarray
    original: np.ndarray
    status: np.ndarray
    labels: LabelSets
    empty_reason: np.ndarray
    waiting: "pd.DataFrame"   # key, batch, first_status, why

    def counts(self) -> dict[str, int]:
        return {s: int(np.sum(self.status == s)) for s in FINAL_STATUSES}


def refiner_sets(refine: StageAnswers) -> tuple[np.ndarray, LabelSets]:
    """Per refine page: are all its refiners done, and the labels at least half of them chose."""
    counts = refine.slot_counts
    done = (counts > 0) & (refine.answered_counts == counts)
    union, votes = refine.votes()
    owner = union.row_ids()
    keep = 2 * votes >= counts[owner]
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner[keep], minlength=len(counts)), out=offsets[1:])
    return done, LabelSets(offsets, union.values[keep])


def finalize(result: Disagreement) -> Final:
    """Combine stage 1 and the refine stage into one status and set per dataset image."""
    import pandas as pd

    inputs, first = result.inputs, result.answers
    refine = stage_answers(inputs, "refine")
    n = len(inputs.images)
    done, refined_sets = refiner_sets(refine)
    refine_page = np.full(n, -1, dtype=np.int64)
    refine_page[refine.images["index"].to_numpy()] = np.arange(len(refine.images))
    is_refined = np.zeros(n, dtype=bool)
    is_refined[refine_page >= 0] = done[refine_page[refine_page >= 0]]
    is_agreed = ~is_refined & (result.status == AGREED)
    status = np.where(is_refined, REFINED, np.where(is_agreed, AGREED, INCOMPLETE)).astype(STATUS_DTYPE)

    # agreed: the first slot's set (all slots are equal); refined: the combined set
    source = np.full(n, -1, dtype=np.int64)
    agreed_rows = np.flatnonzero(is_agreed)
    source[agreed_rows] = first.first_slot[result.page[agreed_rows]]
    refined_rows = np.flatnonzero(is_refined)
    offset = len(first.sets)
    source[refined_rows] = offset + refine_page[refined_rows]
    labels = concat([first.sets, refined_sets]).take(source)

    first_pages, refine_pages = _Pages(first), _Pages(refine)
    empty = (labels.lengths == 0) & (status != INCOMPLETE)
    reason = np.full(n, "", dtype=object)
    for row in np.flatnonzero(empty):
        reason[row] = refine_pages.reason_of(refine_page[row]) or first_pages.reason_of(result.page[row])

    waiting_rows = np.flatnonzero(status == INCOMPLETE)
    waiting = pd.DataFrame({
        "key": inputs.images["key"].to_numpy()[waiting_rows],
        "batch": pd.array(np.where(result.page[waiting_rows] >= 0, first.images["batch"].to_numpy()[
            np.maximum(result.page[waiting_rows], 0)] if len(first.images) else 0, -1), dtype="Int64"),
        "first_status": result.status[waiting_rows],
        "why": [_why_waiting(result, first_pages, refine_pages, refine_page[r], r) for r in waiting_rows],
    })
    waiting.loc[result.page[waiting_rows] < 0, "batch"] = pd.NA
    return Final(keys=inputs.images["key"].to_numpy(), original=inputs.images["label"].to_numpy(),
                 status=status, labels=labels, empty_reason=reason, waiting=waiting)


class _Pages:
    """Where each page's slots lie (computed once: the loops below touch few pages)."""

    def __init__(self, answers: StageAnswers):
        self.answers = answers
        self.counts = answers.slot_counts
        self.first = np.cumsum(self.counts) - self.counts
        self.reason = answers.slots["reason"].to_numpy()
        self.answered = answers.slots["answered"].to_numpy()
        self.who = answers.slots["annotator"].astype(str).to_numpy()

    def rows(self, page: int) -> np.ndarray:
        return np.arange(self.first[page], self.first[page] + self.counts[page]) if page >= 0 else np.zeros(0, int)

    def reason_of(self, page: int) -> str:
        """The most common "none" reason among a page's answers ("" when nobody gave one)."""
        given = [r for r in self.reason[self.rows(page)] if r]
        order = list(formats.NONE_REASONS)
        ranked = sorted(Counter(given).items(),
                        key=lambda kv: (-kv[1], order.index(kv[0]) if kv[0] in order else len(order)))
        return ranked[0][0] if ranked else ""

    def pending(self, page: int) -> list[str]:
        rows = self.rows(page)
        return self.who[rows][~self.answered[rows]].tolist()


def _why_waiting(result: Disagreement, first: _Pages, refine: _Pages, refine_page: int, row: int) -> str:
    if refine_page >= 0:
        if refine.counts[refine_page] == 0:
            return "its refine page has no refiners assigned"
        return "waiting for refiner(s) " + ", ".join(refine.pending(refine_page))
    page = result.page[row]
    if page < 0:
        return "no annotate page in manifest.json"
    if result.status[row] == INCOMPLETE:
        if first.counts[page] == 0:
            return "nobody is assigned to its annotate batch"
        return "waiting for annotator(s) " + ", ".join(first.pending(page))
    return f"{result.status[row]}: not on a refine page yet (run `multilabelfy-analyze refine`)"


def release_names(keys: np.ndarray) -> np.ndarray:
    """The file name alone where it is unique in the dataset, else the whole key."""
    import pyarrow.compute as pc

    from multilabelfy.analysis.inputs import as_arrow_strings

    keys = as_arrow_strings(keys)
    names = pc.replace_substring_regex(keys, pattern=r"^.*/", replacement="")
    encoded = pc.dictionary_encode(names)
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    repeated = np.bincount(codes, minlength=len(encoded.dictionary))[codes] > 1
    return np.where(repeated, keys.to_numpy(zero_copy_only=False), names.to_numpy(zero_copy_only=False))


def write_final(out_dir: Path, final: Final, allow_incomplete: bool = False) -> list[Path]:
    """Write real_labels.json, labels.csv, refined_labels.json (and waiting.csv); return the paths.

    Without `allow_incomplete`, waiting images write only waiting.csv, so earlier final
    labels in `out_dir` are not replaced by partial ones.
    """
    import pandas as pd

    out_dir = Path(out_dir)
    written: list[Path] = []
    waiting_path = out_dir / "waiting.csv"
    if len(final.waiting):
        write_csv(final.waiting, waiting_path)
        written.append(waiting_path)
        if not allow_incomplete:
            return written
    elif waiting_path.exists():
        waiting_path.unlink()
    formats.atomic_write_text(out_dir / "real_labels.json", _json_list(final.labels.join(",", "[", "]")))
    frame = pd.DataFrame({"key": final.keys, "original_label": final.original, "labels": final.labels.to_strings(),
                          "status": final.status.astype(str), "empty_reason": final.empty_reason.astype(str)})
    write_csv(frame, out_dir / "labels.csv")
    done = np.flatnonzero(final.status != INCOMPLETE)
    names = _json_strings(release_names(final.keys)[done])
    values = final.labels.take(done).join(",", "[", "]", quote='"')
    formats.atomic_write_text(out_dir / "refined_labels.json", _json_object(names, values))
    return written + [out_dir / "real_labels.json", out_dir / "labels.csv", out_dir / "refined_labels.json"]


def _json_list(items) -> str:
    """A JSON list from already-encoded items (a pyarrow string array)."""
    return "[" + ",".join(items.to_pylist()) + "]\n"


def _json_strings(texts: np.ndarray) -> list[str]:
    """JSON string literals (json.dumps only where a character needs escaping)."""
    plain = all(t.isprintable() and '"' not in t and "\\" not in t for t in texts.tolist())
    return [f'"{t}"' for t in texts.tolist()] if plain else [json.dumps(t, ensure_ascii=False) for t in texts.tolist()]


def _json_object(names: list[str], values) -> str:
    """A JSON object from encoded names and values (the release form, written without a dict)."""
    return "{" + ",".join(f"{n}:{v}" for n, v in zip(names, values.to_pylist())) + "}\n"


def label_count_distribution(final: Final) -> dict[str, int]:
    """Images with 0, 1, 2 and more than 2 final labels (the paper's Figure 3), finished images only."""
    lengths = final.labels.lengths[final.status != INCOMPLETE]
    return {"0": int(np.sum(lengths == 0)), "1": int(np.sum(lengths == 1)), "2": int(np.sum(lengths == 2)),
            ">2": int(np.sum(lengths > 2))}
