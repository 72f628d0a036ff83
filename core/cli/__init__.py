"""Command line: ``python -m core <subcommand> DATA ... --out REPORT.json``.

One module per subcommand (``add_parser`` and ``run``); the role flags come from one builder,
:func:`core.cli.common.add_role_flags`. Exit 0: report written. Exit 2: the input cannot be
analysed (one plain sentence on stderr). Any other exit code is a bug. See
``docs/cli-and-reports.md`` and the README.

``--lang en|es`` (on every subcommand; or ``ALLIANCE_LANG``) chooses the language of the
sentences (reasons, messages, definitions, the HTML report, ``--help``); JSON keys and enumerated
values never change. English by default.

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

from core.cli import alliance_outcome, analyze, fit, ipd_meta, pool, power, report, riclpm, signal, store, summary
from core.cli.common import add_lang_flag, check_arguments, requested_language, write_report
from core.errors import InputError, ModelError
from core.i18n import N_, _, language

SUBCOMMANDS = (analyze, report, pool, ipd_meta, alliance_outcome, fit, signal, riclpm, power, store, summary)

BUG_REPORT = N_("This is a bug: please report it on the project's issue tracker with the command you ran "
                "(run it again with ALLIANCE_DEBUG=1 to see the details).")


OUT_OF_MEMORY = N_("the computer ran out of memory while analysing this file. Try a smaller file, or close "
                   "other programs, and run it again.")


#: argparse's own texts that a user sees (usage, section titles, --help, its refusals), marked here so
#: that the catalogue has them; :func:`build_parser` has argparse translate through ours.
ARGPARSE_TEXTS = (
    N_("usage: "), N_("options"), N_("positional arguments"), N_("show this help message and exit"),
    N_("the following arguments are required: %s"), N_("unrecognized arguments: %s"),
    N_("invalid choice: %(value)r (choose from %(choices)s)"), N_("expected one argument"),
    N_("argument %(argument_name)s: %(message)s"), N_("invalid %(type)s value: %(value)r"),
    N_("ambiguous option: %(option)s could match %(matches)s"), N_("not allowed with argument %s"),
    N_("one of the arguments %s is required"), N_("expected at least one argument"),
    N_("expected at most one argument"),
)


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as one line (the full usage stays in ``--help``)."""

    def error(self, message):
        self.exit(2, "error: " + _("{message}. Run '{prog} --help' for the options.").format(
            message=message, prog=self.prog) + "\n")


def _with_source(message: str, args) -> str:
    """Prefix the data file's name when the message does not name it already."""
    name = getattr(args, "data", None)
    if name and name not in message and Path(name).name not in message:
        return f"{name}: {message}"
    return message


def _leaf_parsers(parser: argparse.ArgumentParser):
    """Every parser that takes a subcommand's flags (``store`` has subcommands of its own)."""
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not actions:
        yield parser
    for action in actions:
        for child in dict.fromkeys(action.choices.values()):
            yield from _leaf_parsers(child)


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser; help texts in the current language. ``--lang`` is accepted
    before the subcommand and by every subcommand (one flag builder, :func:`add_lang_flag`)."""
    argparse._ = _  # argparse looks up its module-level gettext alias on every call
    parser = _Parser(prog="python -m core", description=_("Command line: python -m core <subcommand> DATA ... "
                                                          "--out REPORT.json"))
    add_lang_flag(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    for leaf in _leaf_parsers(parser):
        if leaf is not parser:
            add_lang_flag(leaf)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; the language (``--lang``, else ``ALLIANCE_LANG``, else English) holds for
    this call only (a context variable), so a caller's language is left as it was."""
    argv = sys.argv[1:] if argv is None else list(argv)
    with language(requested_language(argv)):  # --help and argparse's errors in that language
        args = build_parser().parse_args(argv)
    with language(requested_language(argv, args)):
        return _main(args)


def _main(args) -> int:
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
        print("error: " + _with_source(_(OUT_OF_MEMORY), args), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: " + _("interrupted."), file=sys.stderr)
        return 130
    except Exception as err:  # a bug: one sentence and where to report it, never a traceback
        if os.environ.get("ALLIANCE_DEBUG"):
            raise
        print("error: " + _("an unexpected internal error ({error}) stopped '{command}'. {bug}").format(
            error=type(err).__name__, command=args.command, bug=_(BUG_REPORT)), file=sys.stderr)
        return 1
    return 0
