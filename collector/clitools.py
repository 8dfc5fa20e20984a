"""Console-script conventions shared by the three stage commands.

Every user mistake (missing path, bad option value, bad data) is raised as `UserError`
and printed as one sentence on stderr with exit code 2: no traceback. Unexpected errors
still show their traceback, because those are bugs to report.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path


class UserError(Exception):
    """A problem the user can fix; its message names what and where."""


EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad options the same way as every other user error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks; appends a default only where there is a real one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (default is not None and default is not False and default is not argparse.SUPPRESS
                and "default" not in text and action.option_strings):
            text += " (default: %(default)s)"
        return text


def make_parser(prog: str, description: str, command_modules: Sequence[str]) -> argparse.ArgumentParser:
    """A parser with one subcommand per module; each module has `register(subparsers)`.

    Command modules keep heavy imports (torch, pandas) inside their run functions so
    that `--help` stays instant.
    """
    parser = _Parser(prog=prog, description=description,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for name in command_modules:
        importlib.import_module(name).register(subparsers)
    return parser


def make_command_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser for a single-command tool (no subcommands), with the shared conventions."""
    return _Parser(prog=prog, description=description, formatter_class=_HelpFormatter)


def add_command(subparsers: argparse._SubParsersAction, name: str, help: str, description: str | None = None,
                run: Callable[[argparse.Namespace], int | None] | None = None) -> argparse.ArgumentParser:
    """Add one subcommand whose `--help` shows defaults and keeps the description's line breaks."""
    parser = subparsers.add_parser(name, help=help, description=description or help,
                                   formatter_class=_HelpFormatter)
    if run is not None:
        parser.set_defaults(run=run)
    return parser


def run_parser(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse, run the chosen command, and turn `UserError` into one line on stderr."""
    args = parser.parse_args(argv)
    try:
        code = args.run(args)
    except UserError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


def existing_path(kind: str = "path") -> Callable[[str], Path]:
    """An argparse type that rejects a missing path with a sentence naming it."""
    def check(value: str) -> Path:
        path = Path(value).expanduser()
        if not path.exists():
            raise argparse.ArgumentTypeError(f"{kind} {value!r} does not exist")
        return path
    check.__name__ = kind
    return check


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type for whole numbers of at least `minimum`, with a sentence when not."""
    def check(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"{value!r} must be at least {minimum}")
        return number
    check.__name__ = "int" if minimum <= 0 else "count"
    return check


#: counts such as --batches: a whole number of at least 1
positive_int = int_at_least(1)
#: sizes where 0 means "off" or "automatic"
non_negative_int = int_at_least(0)


def name_list(value: str) -> list[str]:
    """An argparse type for comma-separated names such as `alice,bob`: non-empty, unique."""
    names = [part.strip() for part in value.split(",")]
    if not names or any(not n for n in names):
        raise argparse.ArgumentTypeError(f"{value!r} must be comma-separated non-empty names")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"{value!r} names someone twice")
    return names
