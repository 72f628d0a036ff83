"""``python -m core store import|export --format fhir``: FHIR R4 bundles in and out of the clinic
database (the flags, and the two commands; :mod:`core.cli.store` calls them).

- ``store import BUNDLE.json --format fhir --dataset NAME --user NAME [--alliance-code SYSTEM|CODE]
  [--symptoms-code SYSTEM|CODE] ...``: a Bundle (or NDJSON) read by :mod:`core.intake.fhir`, previewed
  and stored in one transaction as a spreadsheet is (``--preview`` only shows what would change);
  unusable resources are listed as ``excluded_rows`` with ``row`` = the resource's 1-based position.
  Without ``--alliance-code`` / ``--symptoms-code`` the dashboard's own export codes are read.
- ``store export --dataset NAME --user NAME --format fhir --out FILE.json [--patient ID]``: what that
  user may see (the same rule as the CSV export) as a Bundle of Observations
  (:mod:`core.reporting.fhir_export`), the symptom scores with their early-warning status; audited.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from core.errors import InputError
from core.i18n import _

FORMATS = ("csv", "fhir")
#: The role flags a CSV import needs (argparse cannot require them for one format only).
CSV_REQUIRED = ("patient", "session", "symptoms")


def add_import_flags(parser: argparse.ArgumentParser) -> None:
    """``--format csv|fhir`` and the FHIR mapping's flags; the CSV role flags become required only
    for ``--format csv`` (checked by :func:`require_csv_flags`)."""
    parser.add_argument("--format", choices=FORMATS, default="csv",
                        help=_("csv: a spreadsheet with the role flags; fhir: a FHIR R4 Bundle or NDJSON of "
                               "QuestionnaireResponse and Observation resources"))
    for measure, word in (("alliance", _("alliance")), ("symptoms", _("symptom"))):
        parser.add_argument(f"--{measure}-code", action="append", metavar="SYSTEM|CODE",
                            help=_("FHIR: the {measure} measure's Observation code (SYSTEM|CODE or CODE) or "
                                   "questionnaire (canonical URL); repeat for more (default: this dashboard's "
                                   "own export code)").format(measure=word))
        parser.add_argument(f"--{measure}-instrument", metavar="ID",
                            help=_("FHIR: the instrument definition that scores the {measure} questionnaire's "
                                   "items (default: {default})").format(
                                measure=word, default="ans" if measure == "alliance" else "oq45"))
        parser.add_argument(f"--{measure}-reverse-keyed", metavar="ITEMS",
                            help=_("FHIR: the {measure} questionnaire's reverse-keyed items, e.g. 2,5 or none "
                                   "(needed where the definition has none sourced, as the ANS)").format(measure=word))
    for action in parser._actions:
        if action.dest in CSV_REQUIRED:
            action.required = False


def add_export_flags(parser: argparse.ArgumentParser) -> None:
    """``store export --format csv|fhir|backup`` (backup: :mod:`core.store.backup`) and ``--patient``."""
    parser.add_argument("--format", choices=(*FORMATS, "backup"), default="csv",
                        help=_("csv (default): what that user may see, for spreadsheets (text a spreadsheet would "
                               "run as a formula is written with a leading '); fhir: a FHIR R4 Bundle of "
                               "Observations (JSON); backup: the stored data exactly, with users' access and "
                               "history, for 'store import --restore' (supervisors)"))
    parser.add_argument("--patient", metavar="ID", help=_("FHIR: only this patient's course"))


def wants_fhir(args) -> bool:
    return getattr(args, "format", "csv") == "fhir"


def require_csv_flags(args) -> None:
    """The role flags a CSV import needs, refused as argparse would."""
    from core.intake.fhir import looks_like_fhir

    missing = [f"--{name}" for name in CSV_REQUIRED if not getattr(args, name, None)]
    if missing:
        text = _("the following arguments are required: %s") % ", ".join(missing)
        if looks_like_fhir(str(args.data)):
            text += ". " + _("For a FHIR bundle, give --format fhir.")
        raise InputError(text)


def _items(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    if text.strip().lower() in ("none", "ninguno", ""):
        return ()
    try:
        return tuple(int(x) for x in text.replace(";", ",").split(",") if x.strip())
    except ValueError:
        raise InputError(_("'{text}' is not a list of item numbers (for example 2,5, or none).").format(
            text=text)) from None


def mapping_from_args(args):
    """The :class:`core.intake.fhir.FhirMapping` the flags describe."""
    from core.cli.common import parse_range
    from core.intake.fhir import DEFAULT_CODES, FhirMapping, FhirMeasure

    given = any(getattr(args, f"{m}_code", None) for m in ("alliance", "symptoms"))
    measures = {}
    for m in ("alliance", "symptoms"):
        codes = getattr(args, f"{m}_code", None) or ([] if given else [DEFAULT_CODES[m]])
        if not codes:
            continue
        measures[m] = FhirMeasure(codes=tuple(codes), instrument=getattr(args, f"{m}_instrument", None),
                                  reverse_keyed=_items(getattr(args, f"{m}_reverse_keyed", None)),
                                  range=parse_range(getattr(args, f"{m}_range", None)))
    return FhirMapping(**measures)


def import_bundle(store, args, sign_in, summary) -> None:
    """Preview and store a FHIR bundle (one transaction), as ``store import`` does a spreadsheet."""
    from core.intake.fhir import read_fhir_validated

    user = sign_in(store, args.user)
    result = read_fhir_validated(args.data, mapping_from_args(args), source=Path(args.data).name)
    validated = result.validated
    preview = store.preview_upload(user, args.dataset, validated, shareable=args.shareable,
                                   instruments=result.instruments or None)
    report = {"dataset": preview.dataset, "new_dataset": preview.is_new_dataset, "added": len(preview.added),
              "changed_rows": preview.changed_rows, "changed_cells": len(preview.changed),
              "unchanged": preview.unchanged, "kept": preview.kept,
              "excluded_rows": validated.excluded_records(), "n_resources": validated.n_rows_read,
              "n_patients": int(validated.data["patient"].nunique()), "sessions": result.session_rule,
              "notes": list(validated.notes), "stored": False, "version": preview.base_version}
    if not args.preview:
        stored = store.apply_upload(user, preview)
        report.update(stored=True, version=stored.version)
    summary(report, args.out)


def export_bundle(store, args, sign_in, summary) -> None:
    """What the user may see as a FHIR Bundle of Observations (symptoms with their signal status); audited."""
    from core.clinical.signal import published_settings, session_signal
    from core.reporting.fhir_export import bundle_bytes, fhir_bundle

    user = sign_in(store, args.user)
    ds = store.load_dataset(user, args.dataset)
    data = ds.data
    if args.patient is not None and not (data["patient"].astype(str) == args.patient).any():
        raise InputError(_("There is no patient '{patient}' among the patients you can see in '{dataset}'.").format(
            patient=args.patient, dataset=args.dataset))
    signal = None
    if "symptoms" in data.columns and data["symptoms"].notna().any():
        model = store.clinic_signal_model(user, args.dataset)  # the whole clinic's expected courses
        settings, _note = published_settings(data["symptoms"])
        rows = data if args.patient is None else data[data["patient"].astype(str) == args.patient]
        signal = session_signal(rows, model, settings)
    bundle = fhir_bundle(data, dataset=ds.name, signal=signal, instruments=ds.instruments, patient=args.patient)
    try:
        Path(args.out).write_bytes(bundle_bytes(bundle))
    except OSError as err:
        raise InputError(_("Could not write {out}: {error}.").format(out=args.out, error=err.strerror or err)) from None
    n = len(bundle["entry"])
    who = f"patient {args.patient}" if args.patient is not None else "all patients"
    store.log(user, "export", f"{args.dataset} (command line, FHIR bundle, {who}, {n} observations)")
    summary({"dataset": args.dataset, "format": "fhir", "observations": n, "out": args.out})
