"""``python -m core summary``: the one-page PDF summary of one patient (:mod:`core.reporting.summary_pdf`).

From a file: ``summary DATA --patient COL --session COL --symptoms COL [--alliance COL] [--therapist COL]
--patient-id ID --lang en|es --out FILE.pdf`` (the contract). From the clinic database, as the
dashboard's patient page does it (what that user may see, the clinic's expected courses, audited):
``summary --dataset NAME --user NAME --patient-id ID --out FILE.pdf`` (password from
``ALLIANCE_PASSWORD``). The PDF's text holds the patient ID, the current signal status in words and
the latest symptom score.
"""
from __future__ import annotations

import getpass
from pathlib import Path

from core.cli.common import add_role_flags, measure_ranges
from core.errors import InputError
from core.i18n import _


def add_parser(sub) -> None:
    parser = sub.add_parser("summary", help=_("a one-page PDF summary of one patient for the clinical record"))
    add_role_flags(parser, out=False)
    for action in parser._actions:  # a file and its role flags, or --dataset and --user
        if action.dest == "data":
            action.nargs, action.default = "?", None
        if action.dest in ("patient", "session", "symptoms"):
            action.required = False
    parser.add_argument("--patient-id", required=True, metavar="ID", help=_("the patient to summarise"))
    parser.add_argument("--out", required=True, help=_("the PDF file to write"))
    parser.add_argument("--dataset", help=_("read the clinic database's data set instead of a file (with --user)"))
    parser.add_argument("--user", help=_("who is producing it, signed in to the clinic database (password from "
                                         "ALLIANCE_PASSWORD)"))
    parser.add_argument("--lower-is-worse", action="store_true",
                        help=_("a lower score is worse (alliance and well-being scales); default: higher is worse"))
    parser.add_argument("--reliable-change", type=float, metavar="RC",
                        help=_("reliable change in score points (default: OQ-45.2, 14 for totals or 14/45 for mean "
                               "item scores, unless --lower-is-worse)"))
    parser.add_argument("--cutoff", type=float, metavar="C", help=_("clinical cut-off (default: OQ-45.2, 63.5 or 63.5/45)"))
    parser.add_argument("--rupture-threshold", type=float, default=1.0, metavar="SD",
                        help=_("a possible rupture: alliance this many own SDs below the mean so far (default 1)"))
    parser.set_defaults(func=run)


def run(args) -> None:
    from core.cli.common import check_out_path

    check_out_path(args.out)
    if not str(args.out).lower().endswith(".pdf"):
        raise InputError(_("--out {out} should name a .pdf file.").format(out=args.out))
    if args.dataset or args.user:
        if not (args.dataset and args.user):
            raise InputError(_("Give both --dataset and --user to summarise a patient of the clinic database."))
        pdf = _from_store(args)
    else:
        missing = [f"--{n}" for n in ("patient", "session", "symptoms") if not getattr(args, n, None)]
        if args.data is None or missing:
            raise InputError(_("Give a data file with --patient, --session and --symptoms (or --dataset and --user for "
                               "the clinic database)."))
        pdf = _from_file(args)
    try:
        Path(args.out).write_bytes(pdf)
    except OSError as err:
        raise InputError(_("Could not write {out}: {error}.").format(out=args.out, error=err.strerror or err)) from None


def _settings(args, symptoms):
    from core.clinical.signal import published_settings

    if args.reliable_change is not None and not args.reliable_change > 0:
        raise InputError(_("--reliable-change must be a positive number of score points."))
    if not args.rupture_threshold > 0:
        raise InputError(_("--rupture-threshold must be a positive number of SDs."))
    return published_settings(symptoms, not args.lower_is_worse, args.reliable_change, args.cutoff)


def _from_file(args) -> bytes:
    from core.cli.common import validated_from_args
    from core.reporting.summary_pdf import summarise_patient, summary_pdf

    validated = validated_from_args(args)
    data = validated.data
    if data.empty:
        raise InputError(_("No row can be used: see the reasons in the validation (every row was left out)."))
    if not (data["patient"].astype(str) == args.patient_id).any():
        raise InputError(_("There is no patient '{patient}' in the file.").format(patient=args.patient_id))
    settings, assumed = _settings(args, data["symptoms"])
    summary = summarise_patient(data, args.patient_id, dataset=Path(args.data).name, settings=settings,
                                threshold=args.rupture_threshold, ranges=measure_ranges(args),
                                produced_by=getpass.getuser(), notes=(assumed,) if assumed else ())
    return summary_pdf(summary)


def _from_store(args) -> bytes:
    from core.cli.store import _open, _sign_in
    from core.reporting.summary_pdf import summarise_patient, summary_pdf
    from core.store import AccessDenied, NoSuchDataset
    from core.store.errors import NoSuchPatient

    store = _open(create=False)
    try:
        user = _sign_in(store, args.user)
        try:
            ds = store.load_dataset(user, args.dataset)
            store.patient_sessions(user, args.dataset, args.patient_id, log_view=False)  # may she see this patient?
            data = ds.data
            model = store.clinic_signal_model(user, args.dataset) if "symptoms" in data else None
        except (AccessDenied, NoSuchDataset, NoSuchPatient) as err:
            raise InputError(str(err)) from None
        settings, assumed = _settings(args, data["symptoms"])
        ranges = {m: tuple(v) for m, v in (ds.validated.ranges or {}).items()}
        summary = summarise_patient(data, args.patient_id, dataset=ds.name, settings=settings, model=model,
                                    threshold=args.rupture_threshold, ranges=ranges, demo=ds.is_demo,
                                    produced_by=user.display_name, notes=(assumed,) if assumed else ())
        pdf = summary_pdf(summary)
        store.log(user, "export", f"{ds.name}: patient {args.patient_id} summary (PDF, command line)")
        return pdf
    finally:
        store.close()
