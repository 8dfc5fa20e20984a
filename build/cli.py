"""`multilabelfy-build`: stage 1 (proposals) and page rendering.

Each subcommand lives in its own module with a `register(subparsers)` function; add a
new one to COMMANDS.
"""
from __future__ import annotations

from collections.abc import Sequence

from multilabelfy.collector.clitools import make_parser, run_parser

COMMANDS = (
    "multilabelfy.build.data_commands",
    "multilabelfy.build.propose_command",
    "multilabelfy.build.select_model_command",
    "multilabelfy.build.pages_command",
)

DESCRIPTION = """\
Build the inputs of human annotation: check a dataset, export its class catalog,
propose labels with a timm model, and render the static annotation site.

Run `multilabelfy-build COMMAND --help` for each command's options."""


def main(argv: Sequence[str] | None = None) -> int:
    return run_parser(make_parser("multilabelfy-build", DESCRIPTION, COMMANDS), argv)


if __name__ == "__main__":
    raise SystemExit(main())
