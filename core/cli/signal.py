"""``python -m core signal``: the early-warning signal for every patient and session."""
from __future__ import annotations

import datetime
from pathlib import Path

from core.cli.common import add_role_flags, check_out_path, validated_from_args
from core.errors import InputError
from core.i18n import _


def add_parser(sub) -> None:
    from core.clinical.signal_bounds import DEFAULT_METHOD, HORIZON, METHODS, RATE_AT_RISK, RATE_NOT_ON_TRACK

    parser = sub.add_parser("signal", help=_("each patient's expected course and who is not on track"))
    add_role_flags(parser)
    parser.add_argument("--lower-is-worse", action="store_true",
                        help=_("a lower score is worse (alliance and well-being scales); default: higher is worse"))
    parser.add_argument("--intake", metavar="COL",
                        help=_("column with each patient's intake score (default: the score at their first session)"))
    parser.add_argument("--reliable-change", type=float, metavar="RC",
                        help=_("reliable change in score points, for the fallback rule, the patients left out of the "
                               "expected course and the validation (default: OQ-45.2, 14 for totals or 14/45 for "
                               "mean item scores, unless --lower-is-worse)"))
    parser.add_argument("--cutoff", type=float, metavar="C",
                        help=_("clinical cut-off (default: OQ-45.2, 63.5 or 63.5/45)"))
    parser.add_argument("--rule", choices=METHODS, default=DEFAULT_METHOD,
                        help=_("trend: all the patient's scores so far (personalised, empirical Bayes; the default); "
                               "session: each session's score on its own"))
    parser.add_argument("--horizon", type=int, default=HORIZON, metavar="N",
                        help=_("the rates hold over each patient's first N sessions (default: {n})").format(n=HORIZON))
    parser.add_argument("--rate", type=float, default=RATE_NOT_ON_TRACK, metavar="P",
                        help=_("share of patients doing as expected flagged not on track at some point (default: "
                               "{p})").format(p=RATE_NOT_ON_TRACK))
    parser.add_argument("--rate-at-risk", type=float, default=RATE_AT_RISK, metavar="P",
                        help=_("the same for at risk or worse (default: {p})").format(p=RATE_AT_RISK))
    parser.add_argument("--norm", metavar="FILE",
                        help=_("judge against an outside norm (JSON written by --save-norm) instead of this file's "
                               "own courses"))
    parser.add_argument("--save-norm", metavar="FILE",
                        help=_("also write this file's expected course as a norm (JSON) for other clinics"))
    parser.add_argument("--date", metavar="COL",
                        help=_("column with each session's date: the validation adds a calendar split"))
    parser.add_argument("--no-validation", action="store_true", help=_("leave out the cross-validation (faster)"))
    parser.set_defaults(func=run)


def run(args) -> dict:
    from core.clinical.signal import published_settings
    from core.clinical.signal_norm import model_from_norm, norm_document, read_norm
    from core.clinical.signal_report import signal_report

    if args.save_norm:
        check_out_path(args.save_norm)
    if not 0 < args.rate < args.rate_at_risk < 1:
        raise InputError(_("--rate and --rate-at-risk must be shares between 0 and 1, --rate the smaller "
                           "(default 0.1 and 0.2)."))
    if not 2 <= args.horizon <= 100:
        raise InputError(_("--horizon must be a number of sessions from 2 to 100."))
    norm_doc = None
    if args.norm:
        try:
            text = Path(args.norm).read_bytes()
        except OSError:
            raise InputError(_("The norm file {file} cannot be read; check the path.").format(file=args.norm)) from None
        norm_doc = read_norm(text)
    validated = validated_from_args(args)
    data = validated.data
    if data.empty:
        raise InputError(_("No row can be used: see the reasons in the validation (every row was left out)."))
    for flag, column in (("--intake", args.intake), ("--date", args.date)):
        if column is not None and column not in data.columns:
            raise InputError(_("There is no column '{column}' for {flag}.").format(column=column, flag=flag))
    if args.reliable_change is not None and not args.reliable_change > 0:
        raise InputError(_("--reliable-change must be a positive number of score points."))
    settings, assumed = published_settings(data["symptoms"], not args.lower_is_worse, args.reliable_change,
                                           args.cutoff, args.intake, rule=args.rule, horizon=args.horizon,
                                           rate_not_on_track=args.rate, rate_at_risk=args.rate_at_risk,
                                           date=args.date)
    if norm_doc is not None:
        model = model_from_norm(norm_doc, settings, name=Path(args.norm).name)
    else:
        from core.clinical.signal import fit_signal_model

        model = fit_signal_model(data, settings)
    report = signal_report(data, settings, model=model, validation=not args.no_validation)
    if assumed:
        report["definition"] += " " + assumed
    if args.save_norm:
        import json

        doc = norm_document(data, settings, name=Path(args.data).name, created=datetime.date.today().isoformat(),
                            model=None if norm_doc is not None else model)
        Path(args.save_norm).write_text(json.dumps(doc, indent=1, allow_nan=False), encoding="utf-8")
        report["saved_norm"] = args.save_norm
    report["excluded_rows"] = validated.excluded_records()
    report["n_observations"] = int(len(data))
    return report
