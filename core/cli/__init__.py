"""Command line: ``python -m core <subcommand> DATA ... --out REPORT.json``.

One module per subcommand (``add_parser`` and ``run``); the role flags come from one builder,
:func:`core.cli.common.add_role_flags`. Exit 0: report written. Exit 2: the input cannot be
analysed (one plain sentence on stderr). Any other exit code is a bug. See
``docs/cli-and-reports.md`` and the README.

No traceback reaches a user: refusals (:class:`~core.errors.InputError`,
:class:`~core.errors.ModelError`, a file that cannot be read or a report that cannot be
written, running out of memory) are one sentence with exit 2; anything else is a bug, reported
as one sentence that says so and where to report it, with exit 1 (``ALLIANCE_DEBUG=1`` shows
the traceback).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from core.cli import analyze, fit, ipd_meta, pool, power, report, riclpm, signal, store
from core.cli.common import check_arguments, write_report
from core.errors import InputError, ModelError

SUBCOMMANDS = (analyze, report, pool, ipd_meta, fit, signal, riclpm, power, store)

BUG_REPORT = ("This is a bug: please report it on the project's issue tracker with the command you ran "
              "(run it again with ALLIANCE_DEBUG=1 to see the details).")


OUT_OF_MEMORY = ("the computer ran out of memory while analysing this file. Try a smaller file, or close "
                 "other programs, and run it again.")


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as one line (the full usage stays in ``--help``)."""

    def error(self, message):
        self.exit(2, f"error: {message}. Run '{self.prog} --help' for the options.\n")


def _with_source(message: str, args) -> str:
    """Prefix the data file's name when the message does not name it already."""
    name = getattr(args, "data", None)
    if name and name not in message and Path(name).name not in message:
        return f"{name}: {message}"
    return message


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m core", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_arguments(args)
    except InputError as err:  # about the command's options, not the data file
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        result = args.func(args)
        if result is not None:  # ``store`` writes its own files and summary
            write_report(result, getattr(args, "out", None))
    except (InputError, ModelError) as err:
        print(f"error: {_with_source(str(err), args)}", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: " + _with_source(OUT_OF_MEMORY, args), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return 130
    except Exception as err:  # a bug: one sentence and where to report it, never a traceback
        if os.environ.get("ALLIANCE_DEBUG"):
            raise
        print(f"error: an unexpected internal error ({type(err).__name__}) stopped "
              f"'{args.command}'. {BUG_REPORT}", file=sys.stderr)
        return 1
    return 0
