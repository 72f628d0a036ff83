"""What every subcommand shares: the role flags (one argument builder), reading and validating
the file, parsing ranges, and writing the report."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.errors import InputError


def add_role_flags(parser: argparse.ArgumentParser, *, optional=("alliance", "therapist"),
                   ranges: bool = True, out: bool = True) -> None:
    """The data file and the contract's role flags: ``--patient --session --symptoms`` (required),
    the ``optional`` roles, ``--alliance-range --symptoms-range`` (``ranges``), ``--sheet``, ``--out``."""
    parser.add_argument("data", help="CSV or Excel file, one row per patient and session")
    parser.add_argument("--patient", required=True, help="column with the patient ID")
    parser.add_argument("--session", required=True, help="column with the session number")
    parser.add_argument("--symptoms", required=True, help="column with the symptom score")
    for role in optional:
        parser.add_argument(f"--{role}", help=f"column with the {role} " + ("score" if role == "alliance" else "ID"))
    if ranges:
        parser.add_argument("--alliance-range", help="valid range MIN,MAX; values outside are left out")
        parser.add_argument("--symptoms-range", help="valid range MIN,MAX; values outside are left out")
    parser.add_argument("--sheet", help="Excel sheet (default: the first)")
    if out:
        parser.add_argument("--out", help="where to write the report (default: standard output)")


def parse_range(text: str | None) -> tuple[float, float] | None:
    """``"1,7"`` (or ``1;7``, ``1:7``, ``1,5;7,5`` with decimal commas) → ``(1.0, 7.0)``."""
    if text is None:
        return None
    try:
        lo, hi = (float(x.replace(",", ".")) for x in text.split(",", 1)) if text.count(",") == 1 \
            else (float(x) for x in text.split(";" if ";" in text else ":"))
    except ValueError:
        raise InputError(f"The range '{text}' is not of the form MIN,MAX (for example 1,7).") from None
    if lo > hi:
        raise InputError(f"The range '{text}' has its minimum above its maximum.")
    return lo, hi


def measure_ranges(args) -> dict[str, tuple[float, float]]:
    """The ``--alliance-range`` and ``--symptoms-range`` given, by measure."""
    return {k: v for k, v in (("alliance", parse_range(args.alliance_range)),
                              ("symptoms", parse_range(args.symptoms_range))) if v}


def validated_from_args(args):
    """Read ``args.data`` and validate it with the role flags and ranges."""
    from core.intake.mapping import ColumnMapping
    from core.intake.reading import read_table
    from core.intake.validation import validate_table

    raw = read_table(args.data, sheet=args.sheet)
    mapping = ColumnMapping(patient=args.patient, session=args.session, symptoms=args.symptoms,
                            alliance=getattr(args, "alliance", None),
                            therapist=getattr(args, "therapist", None))
    return validate_table(raw, mapping, ranges=measure_ranges(args))


def write_report(report: dict | str, out: str | None) -> None:
    """JSON (or text) to ``out``, or to standard output."""
    text = report if isinstance(report, str) else json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False)
    if out:
        Path(out).write_text(text + "\n", encoding="utf-8")
    else:
        sys.stdout.write(text + "\n")
