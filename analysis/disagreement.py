"""Stage 3: which images the annotators agree on, and which go to refinement.

Every image of `PRIVATE_DIR/images.csv` gets one status:

- `agreed`: every annotator assigned to its batch answered, all chose exactly the same
  set, and that set contains the original label;
- `original-missing`: all answered with the same set, but without the original label;
- `disagreed`: all answered, and the sets differ;
- `incomplete`: an assigned annotator has not answered (or the image has no annotate
  page or nobody assigned): never counted as agreement.

Only the latest record per (stage, image, annotator) counts. Everything is computed
over all images at once with numpy (see `labelsets`), so ImageNet-train scale (1.28 M
images × 2 annotators) takes seconds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from multilabelfy.analysis.labelsets import LabelSets, equal_sets, unique_counts
from multilabelfy.collector.clitools import UserError

from multilabelfy.analysis.inputs import StagePages, first_duplicate, index_of

if TYPE_CHECKING:
    import pandas as pd

    from multilabelfy.analysis.inputs import Inputs

AGREED, DISAGREED, ORIGINAL_MISSING, INCOMPLETE = "agreed", "disagreed", "original-missing", "incomplete"
STATUSES: tuple[str, ...] = (AGREED, DISAGREED, ORIGINAL_MISSING, INCOMPLETE)
NEEDS_REFINEMENT: tuple[str, ...] = (DISAGREED, ORIGINAL_MISSING)
STATUS_DTYPE = "<U16"  # fixed-width text: comparisons over a million statuses stay in numpy


@dataclass
class StageAnswers:
    """One stage's pages and its assigned slots (page × annotator) with what each answered.

    `images`: one row per page of the stage, manifest order, columns `index` (row of
    images.csv), `key`, `label`, `batch`; `shown`/`prechecked` are aligned with it.
    `slots`: one row per (page, assigned annotator), grouped by page, columns `image`
    (row of `images`), `slot` (1-based), `annotator`, `answered`, `none`, `reason`,
    `comment`, `elapsed_ms`; `sets` (canonical) is aligned with it, empty when unanswered.
    `unassigned`: stored records of this stage that match no slot.
    """
    stage: str
    images: "pd.DataFrame"
    shown: LabelSets
    prechecked: LabelSets
    slots: "pd.DataFrame"
    sets: LabelSets
    unassigned: "pd.DataFrame"

    @property
    def first_slot(self) -> np.ndarray:
        """Index of each page's first slot (its count of slots is `slot_counts`)."""
        counts = self.slot_counts
        return np.cumsum(counts) - counts

    @property
    def slot_counts(self) -> np.ndarray:
        return np.bincount(self.slots["image"].to_numpy(), minlength=len(self.images))

    @property
    def answered_counts(self) -> np.ndarray:
        slots = self.slots
        return np.bincount(slots["image"].to_numpy(), weights=slots["answered"].to_numpy(),
                           minlength=len(self.images)).astype(np.int64)

    def votes(self) -> tuple[LabelSets, np.ndarray]:
        """Per page: the labels anyone chose (canonical) and, aligned, how many chose each."""
        answered = self.slots["answered"].to_numpy()
        owner = self.slots["image"].to_numpy()[self.sets.row_ids()]
        values = self.sets.values
        keep = answered[self.sets.row_ids()]
        width = int(values.max()) + 1 if len(values) else 1
        keys, counts = unique_counts(owner[keep] * width + values[keep])
        rows, labels = np.divmod(keys, width)
        offsets = np.zeros(len(self.images) + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=len(self.images)), out=offsets[1:])
        return LabelSets(offsets, labels), counts


def stage_answers(inputs: "Inputs", stage: str) -> StageAnswers:
    """Join one stage's manifest pages, its assignments and its stored records."""
    import pandas as pd

    pages = inputs.pages.get(stage)
    if pages is None:
        pages = StagePages(np.zeros(0, dtype=object), np.zeros(0, dtype=np.int64), LabelSets.empty(0),
                           LabelSets.empty(0))
    assigned = inputs.assignments.get(stage, {})
    batch_numbers, starts = np.unique(pages.batch, return_index=True)
    if len(batch_numbers) and not np.all(np.diff(pages.batch) >= 0):
        raise UserError(f"manifest.json: the {stage} batches are not in order")
    slot_parts: list[tuple[np.ndarray, list[str]]] = []
    bounds = np.append(starts, len(pages))
    for batch, start, stop in zip(batch_numbers.tolist(), bounds[:-1].tolist(), bounds[1:].tolist()):
        if batch not in assigned:
            raise UserError(f"assignments.json names no annotators for {stage} batch {batch} of manifest.json")
        slot_parts.append((np.arange(start, stop, dtype=np.int64), assigned[batch]))
    dup = first_duplicate(pages.keys)
    if dup is not None:
        raise UserError(f"manifest.json: image {dup!r} has more than one {stage} page")
    dataset_rows = index_of(pages.keys, inputs.images["key"])
    if (dataset_rows < 0).any():
        missing = pages.keys[int(np.flatnonzero(dataset_rows < 0)[0])]
        raise UserError(f"manifest.json has a {stage} page for image {missing!r}, which images.csv does not list")
    images = pd.DataFrame({"index": dataset_rows, "key": pages.keys,
                           "label": inputs.images["label"].to_numpy()[dataset_rows], "batch": pages.batch})

    names = sorted({a for _, people in slot_parts for a in people})
    code = {a: i for i, a in enumerate(names)}
    slot_image = np.concatenate([np.repeat(rows, len(people)) for rows, people in slot_parts] or [np.zeros(0, np.int64)])
    slot_code = np.concatenate([np.tile(np.asarray([code[a] for a in people], dtype=np.int64), len(rows))
                                for rows, people in slot_parts] or [np.zeros(0, np.int64)])
    slot_number = np.concatenate([np.tile(np.arange(1, len(people) + 1), len(rows)) for rows, people in slot_parts]
                                 or [np.zeros(0, np.int64)])

    store = inputs.store
    rec_page, rec_code = store.matches(stage, pages.keys, np.asarray(names, dtype=object))
    width = max(len(names), 1)
    rec_slot = _slot_of(slot_image * width + slot_code, rec_page, rec_code, width)
    matched = np.flatnonzero(rec_slot >= 0)
    record_of_slot = np.full(len(slot_image), -1, dtype=np.int64)
    np.maximum.at(record_of_slot, rec_slot[matched], matched)  # the latest record in file order counts
    answered = record_of_slot >= 0
    safe = np.where(answered, record_of_slot, 0)

    def column(name: str, fill):
        values = np.full(len(safe), fill, dtype=object)
        if len(store):
            taken = store.table[name].take(safe[answered]).to_numpy(zero_copy_only=False)
            values[answered] = np.where(pd.isna(taken), fill, taken) if len(taken) else taken
        return values

    slots = pd.DataFrame({
        "image": slot_image, "slot": slot_number,
        "annotator": pd.Categorical.from_codes(slot_code, categories=names) if names else pd.Categorical([]),
        "answered": answered,
        "none": column("none", False).astype(bool),
        "reason": column("reason", ""), "comment": column("comment", ""),
        "elapsed_ms": column("elapsed_ms", np.nan).astype(float),
    })
    sets = store.labels.take(record_of_slot).canonical() if len(store) else LabelSets.empty(len(slots))
    stray = np.flatnonzero(store.stage_mask(stage) & (rec_slot < 0)) if len(store) else np.zeros(0, np.int64)
    unassigned = (store.table.select(["image", "annotator", "batch"]).take(stray).to_pandas()
                  .drop_duplicates(["image", "annotator"], keep="last").reset_index(drop=True))
    return StageAnswers(stage=stage, images=images, shown=pages.shown, prechecked=pages.prechecked,
                        slots=slots, sets=sets,
                        unassigned=unassigned)


def _slot_of(slot_keys: np.ndarray, page: np.ndarray, person: np.ndarray, width: int) -> np.ndarray:
    """For each record, the slot (page, assigned person) it fills, or -1 (by sorted search)."""
    out = np.full(len(page), -1, dtype=np.int64)
    rows = np.flatnonzero((page >= 0) & (person >= 0))
    if not len(rows) or not len(slot_keys):
        return out
    order = np.argsort(slot_keys)
    ordered = slot_keys[order]
    wanted = page[rows] * width + person[rows]
    at = np.minimum(np.searchsorted(ordered, wanted), len(ordered) - 1)
    hit = ordered[at] == wanted
    out[rows[hit]] = order[at[hit]]
    return out


@dataclass
class Disagreement:
    """Stage 1's answers and each dataset image's status (aligned with images.csv)."""
    inputs: "Inputs"
    answers: StageAnswers
    status: np.ndarray          # status per dataset image (STATUS_DTYPE)
    page: np.ndarray            # row of answers.images per dataset image, -1 without annotate page

    def counts(self) -> dict[str, int]:
        return {s: int(np.sum(self.status == s)) for s in STATUSES}

    @property
    def needs_refinement(self) -> np.ndarray:
        return np.isin(self.status, NEEDS_REFINEMENT)


def page_statuses(answers: StageAnswers) -> np.ndarray:
    """The status of each page of a stage from its slots (see the module docstring)."""
    n = len(answers.images)
    slots = answers.slots
    counts = answers.slot_counts
    first = answers.first_slot
    image = slots["image"].to_numpy()
    same = equal_sets(answers.sets, first[image], np.arange(len(slots)))
    all_same = np.bincount(image, weights=~same, minlength=n) == 0
    has_original = np.zeros(n, dtype=bool)
    with_slots = np.flatnonzero(counts > 0)
    has_original[with_slots] = answers.sets.take(first[with_slots]).contains(
        answers.images["label"].to_numpy()[with_slots])
    complete = (counts > 0) & (answers.answered_counts == counts)
    return np.select([~complete, all_same & has_original, all_same], [INCOMPLETE, AGREED, ORIGINAL_MISSING],
                     default=DISAGREED).astype(STATUS_DTYPE)


def analyse(inputs: "Inputs") -> Disagreement:
    """Statuses of every dataset image from the annotate stage."""
    answers = stage_answers(inputs, "annotate")
    status = np.full(len(inputs.images), INCOMPLETE, dtype=STATUS_DTYPE)
    page = np.full(len(inputs.images), -1, dtype=np.int64)
    rows = answers.images["index"].to_numpy()
    page[rows] = np.arange(len(rows))
    status[rows] = page_statuses(answers)
    return Disagreement(inputs=inputs, answers=answers, status=status, page=page)


def table(result: Disagreement) -> "pd.DataFrame":
    """One row per dataset image: key, batch, status, label, counts and everyone's choices.

    Per assigned annotator j (1-based, batch order): `annotator_j`, `answered_j`,
    `labels_j` (space-separated indices; empty with "none"), `none_j`, `reason_j`, `comment_j`.
    `chosen` lists every label anyone chose, `votes` how many chose each (same order).
    """
    import pandas as pd

    answers = result.answers
    images = result.inputs.images
    page = result.page
    has_page = page >= 0
    safe = np.where(has_page, page, 0)
    counts = answers.slot_counts
    frame = pd.DataFrame({
        "key": images["key"].to_numpy(),
        "batch": pd.array(np.where(has_page, answers.images["batch"].to_numpy()[safe] if len(answers.images) else 0, 0),
                          dtype="Int64"),
        "status": pd.Categorical(result.status, categories=list(STATUSES)),
        "label": images["label"].to_numpy(),
        "n_assigned": np.where(has_page, counts[safe] if len(counts) else 0, 0),
        "n_answered": np.where(has_page, answers.answered_counts[safe] if len(counts) else 0, 0),
    })
    frame.loc[~has_page, "batch"] = pd.NA
    union, votes = answers.votes()
    union_text = np.asarray(union.to_strings(), dtype=object)
    vote_text = np.asarray(LabelSets(union.offsets, votes).to_strings(), dtype=object)
    frame["chosen"] = np.where(has_page, union_text[safe] if len(union_text) else "", "")
    frame["votes"] = np.where(has_page, vote_text[safe] if len(vote_text) else "", "")
    set_text = np.asarray(answers.sets.to_strings(), dtype=object)
    slots = answers.slots
    first = answers.first_slot
    for j in range(int(counts.max()) if len(counts) else 0):
        present = has_page & (counts[safe] > j)
        slot = np.where(present, first[safe] + j, 0)
        answered = present & slots["answered"].to_numpy()[slot]
        frame[f"annotator_{j + 1}"] = np.where(present, slots["annotator"].astype(str).to_numpy()[slot], "")
        frame[f"answered_{j + 1}"] = answered
        frame[f"labels_{j + 1}"] = np.where(answered, set_text[slot], "")
        frame[f"none_{j + 1}"] = answered & slots["none"].to_numpy()[slot]
        frame[f"reason_{j + 1}"] = np.where(answered, slots["reason"].to_numpy()[slot], "")
        frame[f"comment_{j + 1}"] = np.where(answered, slots["comment"].to_numpy()[slot], "")
    return frame


def summary(result: Disagreement) -> dict[str, "pd.DataFrame | dict[str, int]"]:
    """Counts per status, per batch and per annotator (what the command prints)."""
    import pandas as pd

    answers = result.answers
    status_of_page = result.status[answers.images["index"].to_numpy()]
    per_batch = pd.crosstab(answers.images["batch"], pd.Categorical(status_of_page, categories=list(STATUSES)),
                            dropna=False).reindex(columns=list(STATUSES), fill_value=0)
    per_batch.columns = list(STATUSES)
    per_batch.index.name = "batch"
    slots = answers.slots
    slot_status = status_of_page[slots["image"].to_numpy()]
    complete = slot_status != INCOMPLETE
    per_annotator = pd.DataFrame({
        "annotator": slots["annotator"].astype(str), "assigned": 1, "answered": slots["answered"].astype(int),
        "labels": np.where(slots["answered"], answers.sets.lengths, 0),
        "none": (slots["answered"] & slots["none"]).astype(int),
        "complete": complete.astype(int), "agreed": (slot_status == AGREED).astype(int),
    }).groupby("annotator", observed=True).sum()
    per_annotator["labels_per_answer"] = (per_annotator["labels"] / per_annotator["answered"].where(
        per_annotator["answered"] > 0)).round(3)
    per_annotator["agreed_share"] = (per_annotator["agreed"] / per_annotator["complete"].where(
        per_annotator["complete"] > 0)).round(3)
    return {"status": result.counts(), "per_batch": per_batch,
            "per_annotator": per_annotator.drop(columns=["labels"])}
