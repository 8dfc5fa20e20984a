"""Dawid–Skene over the binary questions "is label c valid for image i?" of the annotate stage.

Every (annotate page, label it showed) is one question; every answered annotator of the
page says yes (ticked) or no. Each annotator has a sensitivity (P yes | valid) and a
specificity (P no | not valid), each label a prior; EM (Dawid & Skene 1979) estimates
them together with each question's probability of being valid, starting from the share
of yes votes. Labels a page did not show are never questions. Laplace smoothing (+1/+2)
keeps the estimates off 0 and 1, so one perfect annotator cannot dominate.

Used by `finalize --dawid-skene`: annotator reliabilities, and the (image, label) pairs
where the model and the final labels disagree, worth a second look.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from multilabelfy.analysis.disagreement import StageAnswers


@dataclass
class DawidSkene:
    annotators: list[str]
    questions_per_annotator: np.ndarray
    sensitivity: np.ndarray
    specificity: np.ndarray
    page: np.ndarray          # per question: row of answers.images
    label: np.ndarray         # per question: class index
    probability: np.ndarray   # per question: P(label valid)
    iterations: int


def fit(answers: StageAnswers, max_iterations: int = 100, tolerance: float = 1e-6) -> DawidSkene:
    """Run EM over every answered (page, shown label, annotator) triple at once."""
    slots = answers.slots
    answered = np.flatnonzero(slots["answered"].to_numpy())
    position, owner = answers.shown.positions(slots["image"].to_numpy()[answered])
    slot = answered[owner]
    label = answers.shown.values[position]
    width = int(max(answers.shown.values.max(initial=0), answers.sets.values.max(initial=0))) + 1
    chosen = answers.sets.row_ids() * width + answers.sets.values  # canonical sets: already sorted
    wanted = slot * width + label
    at = np.minimum(np.searchsorted(chosen, wanted), max(len(chosen) - 1, 0))
    yes = (chosen[at] == wanted).astype(np.float64) if len(chosen) else np.zeros(len(wanted))
    who = slots["annotator"].cat.codes.to_numpy()[slot].astype(np.int64)
    people = list(slots["annotator"].cat.categories)

    asked, question = np.unique(position, return_inverse=True)  # questions somebody answered
    q_label = answers.shown.values[asked]
    q_page = answers.shown.row_ids()[asked]
    n_q, n_a = len(asked), len(people)
    votes = np.bincount(question, minlength=n_q)
    truth = np.bincount(question, weights=yes, minlength=n_q) / np.maximum(votes, 1)
    iterations = 0
    for iterations in range(1, max_iterations + 1):
        t = truth[question]
        sensitivity = (np.bincount(who, weights=t * yes, minlength=n_a) + 1) / (
            np.bincount(who, weights=t, minlength=n_a) + 2)
        specificity = (np.bincount(who, weights=(1 - t) * (1 - yes), minlength=n_a) + 1) / (
            np.bincount(who, weights=1 - t, minlength=n_a) + 2)
        prior = (np.bincount(q_label, weights=truth, minlength=width) + 1) / (np.bincount(q_label, minlength=width) + 2)
        evidence = np.where(yes > 0, np.log(sensitivity / (1 - specificity))[who],
                            np.log((1 - sensitivity) / specificity)[who])
        logit = np.log(prior / (1 - prior))[q_label] + np.bincount(question, weights=evidence, minlength=n_q)
        updated = 1 / (1 + np.exp(-logit))
        change = float(np.max(np.abs(updated - truth))) if n_q else 0.0
        truth = updated
        if change < tolerance:
            break
    return DawidSkene(annotators=people, questions_per_annotator=np.bincount(who, minlength=n_a),
                      sensitivity=sensitivity if n_q else np.full(n_a, np.nan),
                      specificity=specificity if n_q else np.full(n_a, np.nan),
                      page=q_page, label=q_label, probability=truth, iterations=iterations)


def disagreements(model: DawidSkene, answers: StageAnswers, final) -> "pd.DataFrame":  # noqa: F821
    """(key, label, probability, in_final) where P > 0.5 and the final set disagree (finished images)."""
    import pandas as pd

    row = answers.images["index"].to_numpy()[model.page]
    width = int(max(model.label.max(initial=0), final.labels.values.max(initial=0))) + 1
    final_keys = np.sort(final.labels.row_ids() * width + final.labels.values)
    wanted = row * width + model.label
    at = np.minimum(np.searchsorted(final_keys, wanted), max(len(final_keys) - 1, 0))
    in_final = (final_keys[at] == wanted) if len(final_keys) else np.zeros(len(wanted), dtype=bool)
    done = final.status[row] != "incomplete"
    differ = np.flatnonzero(done & ((model.probability > 0.5) != in_final))
    return pd.DataFrame({"key": final.keys[row[differ]], "label": model.label[differ],
                         "probability": model.probability[differ].round(4), "in_final": in_final[differ]})


def annotator_table(model: DawidSkene) -> "pd.DataFrame":  # noqa: F821
    import pandas as pd

    return pd.DataFrame({"annotator": model.annotators, "questions": model.questions_per_annotator,
                         "sensitivity": model.sensitivity.round(4), "specificity": model.specificity.round(4)})
