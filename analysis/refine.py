"""Stage 4a: refinement pages for the images the first-stage annotators did not agree on.

Which images: status `disagreed` or `original-missing` (plus `incomplete` ones on
request), in dataset order. How they are split: with R refiners and N refiners per image,
there are R refine batches; batch b (1..R) is refined by refiners b, b+1, ..., b+N-1
(cyclically), and the images are dealt round-robin to the batches, so every refiner gets
N/R of the images (sizes differ by at most one per batch) and the same inputs always
give the same split.

What a page shows (rendered by build.site, the renderer of the annotate stage):
the labels of the image's annotate page (the top K and the original label where it was
added), then any other label a first-stage annotator chose; pre-checked: every label at
least one first-stage annotator chose (the refiner unticks what is wrong rather than
re-finding what is right); beside each chosen label "k of m" (m: annotators who
answered); as notes, the first-stage comments and "none" reasons (annotators numbered,
not named, so refiners judge the labels, not the people). The page asks for a comment
whenever the submitted set differs from the pre-checked one; the collector enforces it.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from multilabelfy.analysis.disagreement import INCOMPLETE, NEEDS_REFINEMENT, Disagreement
from multilabelfy.collector import formats
from multilabelfy.collector.clitools import UserError

STAGE = "refine"


def select(result: Disagreement, include_incomplete: bool = False) -> np.ndarray:
    """Dataset rows to refine, in dataset order (only images that have an annotate page)."""
    wanted = list(NEEDS_REFINEMENT) + ([INCOMPLETE] if include_incomplete else [])
    return np.flatnonzero(np.isin(result.status, wanted) & (result.page >= 0))


def split(rows: Sequence[int], refiners: Sequence[str], per_image: int = 1) -> dict[int, tuple[list[str], list[int]]]:
    """Batch (from 1) -> (its refiners, its rows): round-robin, N consecutive refiners per batch."""
    refiners = list(refiners)
    if not refiners:
        raise UserError("--refiners names nobody")
    if not 1 <= per_image <= len(refiners):
        raise UserError(f"--per-image {per_image} must be between 1 and the number of refiners ({len(refiners)})")
    count = len(refiners)
    out: dict[int, tuple[list[str], list[int]]] = {}
    for b in range(count):
        people = [refiners[(b + j) % count] for j in range(per_image)]
        mine = [int(r) for r in list(rows)[b::count]]
        if mine:
            out[b + 1] = (people, mine)
    return out


@dataclass
class Plan:
    """The refine stage to render: page specs and refiners per batch."""
    specs: dict[int, list]              # batch -> [build.site.PageSpec]
    assignments: dict[int, list[str]]   # batch -> refiners

    def per_refiner(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for batch, people in self.assignments.items():
            for person in people:
                counts[person] = counts.get(person, 0) + len(self.specs[batch])
        return counts


def page_specs(result: Disagreement, rows: Sequence[int]) -> list:
    """One build.site.PageSpec per dataset row (see the module docstring for what it shows)."""
    from multilabelfy.build.site import PageSpec

    answers = result.answers
    union, votes = answers.votes()
    counts = answers.slot_counts
    first = np.cumsum(counts) - counts
    answered_counts = answers.answered_counts
    slots = answers.slots
    answered = slots["answered"].to_numpy()
    none = slots["none"].to_numpy()
    reason = slots["reason"].to_numpy()
    comment = slots["comment"].to_numpy()
    keys = result.inputs.images["key"].to_numpy()
    specs = []
    for row in rows:
        page = int(result.page[row])
        shown = answers.shown.values[answers.shown.offsets[page]:answers.shown.offsets[page + 1]].tolist()
        start, end = union.offsets[page], union.offsets[page + 1]
        chosen = union.values[start:end].tolist()
        on_page = set(shown)
        shown += [c for c in chosen if c not in on_page]
        m = int(answered_counts[page])
        notes = []
        for j, s in enumerate(range(first[page], first[page] + counts[page]), start=1):
            who = f"Annotator {j}"
            if not answered[s]:
                notes.append(f"{who} has not answered yet.")
                continue
            if none[s]:
                text = formats.NONE_REASONS.get(str(reason[s]), "no reason given") if reason[s] else "no reason given"
                notes.append(f"{who}: none of these labels fit ({text}).")
            if comment[s]:
                notes.append(f"{who} commented: {comment[s]}")
        specs.append(PageSpec(key=str(keys[row]), shown=[int(c) for c in shown], prechecked=chosen,
                              votes={c: f"{int(v)} of {m}" for c, v in zip(chosen, votes[start:end].tolist())},
                              notes=notes, comment_required_on_change=True))
    return specs


def plan(result: Disagreement, refiners: Sequence[str], per_image: int = 1,
         include_incomplete: bool = False) -> Plan:
    """Select, split and describe the refine pages."""
    batches = split(select(result, include_incomplete), refiners, per_image)
    return Plan(specs={b: page_specs(result, rows) for b, (_, rows) in batches.items()},
                assignments={b: people for b, (people, _) in batches.items()})


def check_replace(result: Disagreement, new: Plan, replace: bool) -> None:
    """Refuse to change an existing refine stage silently: stored answers would lose their page."""
    inputs = result.inputs
    old_pages = inputs.pages.get(STAGE)
    if old_pages is None or not len(old_pages) or replace:
        return
    old = {b: (keys, inputs.assignments.get(STAGE, {}).get(b, [])) for b, keys in old_pages.batches().items()}
    fresh = {b: ([s.key for s in specs], new.assignments[b]) for b, specs in new.specs.items()}
    if old != fresh:
        stored = int(inputs.store.stage_mask(STAGE).sum())
        raise UserError(f"manifest.json already has a refine stage that differs from this one ({stored} refine "
                        f"record(s) stored); pass --replace to rebuild it (stored records stay in the store, but "
                        f"those of images moved to another refiner no longer count)")


def build(result: Disagreement, new: Plan, progress: bool = True) -> dict[int, list[formats.ManifestImage]]:
    """Render the pages with the annotate stage's renderer and settings, then assign and issue links."""
    from multilabelfy.build import access, site
    from multilabelfy.build.catalog import load_catalog
    from multilabelfy.build.datasets import open_dataset

    inputs = result.inputs
    settings = access.load_build_settings(inputs.private_dir)
    for name in ("data", "catalog"):
        if name not in settings:
            raise UserError(f"{inputs.private_dir / access.BUILD_FILE} lacks {name!r}: rebuild the site with "
                            f"`multilabelfy-build pages`")
    catalog = load_catalog(settings["catalog"])
    dataset = open_dataset(settings["data"], layout=settings.get("layout", "auto"), num_classes=len(catalog),
                           class_ids=catalog.ids, image_root=settings.get("image_root"))
    exemplars = settings.get("exemplars")
    pages = site.render_stage(inputs.site_dir, STAGE, new.specs, catalog=catalog, dataset=dataset,
                              exemplar_dir=Path(exemplars) if exemplars else None,
                              collector_url=settings.get("collector_url", ""),
                              options=site.SiteOptions.from_json(settings.get("options", {})), progress=progress)
    access.save_assignments(inputs.private_dir, STAGE, new.assignments)
    grants = [(person, STAGE, b) for b, people in sorted(new.assignments.items()) for person in people]
    access.issue_links(inputs.private_dir, grants, site_url=settings.get("site_url", ""))
    access.revoke_links(inputs.private_dir, STAGE, keep=grants)  # a rebuilt stage's dropped refiners
    return pages
