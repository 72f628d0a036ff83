"""Command line: ``python -m core <subcommand> DATA ... --out REPORT.json``.

One module per subcommand (``add_parser`` and ``run``); the role flags come from one builder,
:func:`core.cli.common.add_role_flags`. Exit 0: report written. Exit 2: the input cannot be
analysed (one plain sentence on stderr). Any other exit code is a bug. See
``docs/cli-and-reports.md`` and the README.
"""
from __future__ import annotations

import argparse
import sys

from core.cli import analyze, fit, ipd_meta, pool, power, report, riclpm, signal, store
from core.cli.common import write_report
from core.errors import InputError, ModelError

SUBCOMMANDS = (analyze, report, pool, ipd_meta, fit, signal, riclpm, power, store)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.func(args)
    except (InputError, ModelError) as err:
        name = getattr(args, "data", None)
        message = str(err)
        if name and name not in message:
            message = f"{name}: {message}"
        print(f"error: {message}", file=sys.stderr)
        return 2
    if result is not None:  # ``store`` writes its own files and summary
        write_report(result, args.out)
    return 0
