"""`multilabelfy-analyze`: from the collector's store to final labels and the report.

Each subcommand lives in its own module with a `register(subparsers)` function; add a
new one to COMMANDS.
"""
from __future__ import annotations

from collections.abc import Sequence

from multilabelfy.collector.clitools import make_parser, run_parser

COMMANDS: tuple[str, ...] = (
    "multilabelfy.analysis.evaluate_command",
    "multilabelfy.analysis.report_command",
    "multilabelfy.analysis.disagreement_command",
    "multilabelfy.analysis.refine_command",
    "multilabelfy.analysis.finalize_command",
)

DESCRIPTION = """\
Analyse the annotations: find the images annotators disagree on, build refinement pages,
write the final multi-labels, re-evaluate models on them and render the report.

Run `multilabelfy-analyze COMMAND --help` for each command's options."""


def main(argv: Sequence[str] | None = None) -> int:
    return run_parser(make_parser("multilabelfy-analyze", DESCRIPTION, COMMANDS), argv)


if __name__ == "__main__":
    raise SystemExit(main())
