"""What every subcommand shares: the role flags (one argument builder), reading and validating
the file, parsing ranges, and writing the report."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from core.errors import InputError
from core.i18n import LANGUAGES, _, normalise_language

#: Environment variable with the language of the command line's sentences (``--lang`` wins).
LANG_ENV = "ALLIANCE_LANG"


def add_lang_flag(parser: argparse.ArgumentParser) -> None:
    """``--lang en|es``: the language of the human-readable sentences (reasons, messages on
    stderr, definitions, the HTML report); never of JSON keys or enumerated values."""
    parser.add_argument("--lang", choices=sorted(LANGUAGES), default=argparse.SUPPRESS,
                        help=_("language of the sentences in the output and on stderr (default: {env} if set, "
                               "else en); JSON keys and values such as on_track never change").format(env=LANG_ENV))


def requested_language(argv: list[str] | None = None, args=None) -> str:
    """The language of this run: ``--lang`` (from parsed ``args``, or looked for in ``argv`` before
    parsing, so that ``--help`` is in that language too), else ``$ALLIANCE_LANG``, else English."""
    code = getattr(args, "lang", None) if args is not None else None
    if code is None and argv:
        for i, item in enumerate(argv):
            if item == "--lang" and i + 1 < len(argv):
                code = argv[i + 1]
            elif item.startswith("--lang="):
                code = item.split("=", 1)[1]
    return normalise_language(code or os.environ.get(LANG_ENV))


def add_role_flags(parser: argparse.ArgumentParser, *, optional=("alliance", "therapist"),
                   ranges: bool = True, out: bool = True) -> None:
    """The data file and the contract's role flags: ``--patient --session --symptoms`` (required),
    the ``optional`` roles, ``--alliance-range --symptoms-range`` (``ranges``), ``--sheet``, ``--out``."""
    parser.add_argument("data", help=_("CSV or Excel file, one row per patient and session"))
    parser.add_argument("--patient", required=True, help=_("column with the patient ID"))
    parser.add_argument("--session", required=True, help=_("column with the session number"))
    parser.add_argument("--symptoms", required=True, help=_("column with the symptom score"))
    for role in optional:
        parser.add_argument(f"--{role}", help=_("column with the alliance score") if role == "alliance" else
                            _("column with the therapist ID") if role == "therapist" else role)
    if ranges:
        parser.add_argument("--alliance-range", help=_("valid range MIN,MAX (finite, MIN below MAX; a negative "
                                                       "MIN as --alliance-range=-3,3); values outside are left out"))
        parser.add_argument("--symptoms-range", help=_("valid range MIN,MAX (finite, MIN below MAX); values "
                                                       "outside are left out"))
    parser.add_argument("--sheet", help=_("Excel sheet (default: the first)"))
    parser.add_argument("--max-rows", type=int, metavar="N",
                        help=_("read a CSV file of up to N rows (default: as many as this computer's free memory "
                               "holds, at least 1,048,576); the cells and file-size limits grow in proportion "
                               "(README: Reading files: limits)"))
    if out:
        parser.add_argument("--out", help=_("where to write the report (default: standard output)"))


def parse_range(text: str | None) -> tuple[float, float] | None:
    """``"1,7"`` (or ``1;7``, ``1:7``, ``1,5;7,5`` with decimal commas) → ``(1.0, 7.0)``."""
    if text is None:
        return None
    try:
        lo, hi = (float(x.replace(",", ".")) for x in text.split(",", 1)) if text.count(",") == 1 \
            else (float(x) for x in text.split(";" if ";" in text else ":"))
    except ValueError:
        raise InputError(_("The range '{text}' is not of the form MIN,MAX (for example 1,7).").format(text=text)) from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InputError(_("The range '{text}' is not two finite numbers; give MIN,MAX (for example 1,7).").format(
            text=text))
    if not lo < hi:
        raise InputError(_("The range '{text}' has its minimum not below its maximum; give MIN,MAX with "
                           "MIN below MAX (for example 1,7).").format(text=text))
    return lo, hi


def measure_ranges(args) -> dict[str, tuple[float, float]]:
    """The ``--alliance-range`` and ``--symptoms-range`` given, by measure."""
    return {k: v for k, v in (("alliance", parse_range(args.alliance_range)),
                              ("symptoms", parse_range(args.symptoms_range))) if v}


def read_data(args):
    """Read ``args.data`` (``--sheet``) within the reading limits. A CSV given by path may hold as many
    rows as the free memory holds (:meth:`~core.intake.limits.Limits.for_memory`), or ``--max-rows``;
    an .xlsx workbook keeps its own limits (README: Reading files: limits)."""
    from core.intake.limits import Limits
    from core.intake.reading import read_table

    max_rows = getattr(args, "max_rows", None)
    limits = Limits.for_rows(max_rows) if max_rows else Limits.for_memory()
    return read_table(args.data, sheet=args.sheet, limits=limits)


def validated_from_args(args, *, only_roles: bool = False):
    """Read ``args.data`` and validate it with the role flags and ranges. ``only_roles``: the file's
    other columns are let go before validation (a subcommand that uses none of them, such as
    ``analyze``: a national file's dates and sites would otherwise stay in memory through every fit)."""
    from dataclasses import replace

    from core.intake.mapping import ColumnMapping
    from core.intake.reading import ROW
    from core.intake.validation import validate_table

    raw = read_data(args)
    if only_roles:
        roles = [getattr(args, role, None) for role in ("patient", "session", "symptoms", "alliance", "therapist", "post")]
        keep = [ROW, *dict.fromkeys(c for c in roles if c and c in raw.frame.columns)]
        if args.patient in raw.frame.columns and args.session in raw.frame.columns:
            raw = replace(raw, frame=raw.frame[keep])
    if args.patient in raw.columns and args.session not in raw.columns:
        from core.errors import some_names
        from core.intake.mapping import detect_wide_layout

        layout = detect_wide_layout(raw.columns)
        if layout is not None:
            sessions = sorted({s for by_session in layout.columns.values() for s in by_session})
            raise InputError(_(
                "{file} looks like a wide file (one row per patient, with {measures} repeated over {n:,} session "
                "columns) and has no column '{column}'. The command line reads one row per patient and session: "
                "reshape the file to long, or use the dashboard's Upload page, which reads wide files.").format(
                file=args.data, measures=some_names(layout.columns, 3), n=len(sessions), column=args.session))
    mapping = ColumnMapping(patient=args.patient, session=args.session, symptoms=args.symptoms,
                            alliance=getattr(args, "alliance", None),
                            therapist=getattr(args, "therapist", None), post=getattr(args, "post", None))
    return validate_table(raw, mapping, ranges=measure_ranges(args))


def check_arguments(args) -> None:
    """Refuse, before any work, ranges that are not finite with MIN below MAX and an ``--out``
    that cannot be written."""
    if hasattr(args, "alliance_range") or hasattr(args, "symptoms_range"):
        for name in ("alliance_range", "symptoms_range"):
            parse_range(getattr(args, name, None))
    max_rows = getattr(args, "max_rows", None)
    if max_rows is not None and max_rows < 1:
        raise InputError(_("--max-rows {value} is not a number of rows; give a whole number of 1 or more.").format(
            value=max_rows))
    check_out_path(getattr(args, "out", None))


def check_out_path(out: str | None) -> None:
    """Refuse, before any work, an ``--out`` that cannot be written: a folder, or a file in a
    folder that does not exist or cannot be written to."""
    if not out:
        return
    path = Path(out)
    if path.is_dir():
        raise InputError(_("--out {out} is a folder; give a file name, for example {example}.").format(
            out=out, example=path / "report.json"))
    folder = path.parent
    if not folder.is_dir():
        raise InputError(_("The folder {folder} for --out {out} does not exist; create it or choose another path.").format(
            folder=folder, out=out))
    if not os.access(folder, os.W_OK):
        raise InputError(_("The folder {folder} for --out {out} cannot be written to; choose another path.").format(
            folder=folder, out=out))


def write_report(report: dict | str, out: str | None) -> None:
    """JSON (or text) to ``out``, or to standard output."""
    text = report if isinstance(report, str) else json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False)
    if out:
        try:
            Path(out).write_text(text + "\n", encoding="utf-8")
        except OSError as err:
            raise InputError(_("The report could not be written to {out} ({error}); choose another path.").format(
                out=out, error=err.strerror or type(err).__name__)) from None
    else:
        sys.stdout.write(text + "\n")
