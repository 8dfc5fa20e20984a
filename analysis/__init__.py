"""Stages 3-5: disagreement analysis, refinement pages, final labels, evaluation and the report."""
