"""``python -m core signal``: the early-warning signal for every patient and session."""
from __future__ import annotations

from core.cli.common import add_role_flags, validated_from_args
from core.errors import InputError
from core.i18n import _


def add_parser(sub) -> None:
    parser = sub.add_parser("signal", help=_("each patient's expected course and who is not on track"))
    add_role_flags(parser)
    parser.add_argument("--lower-is-worse", action="store_true",
                        help=_("a lower score is worse (alliance and well-being scales); default: higher is worse"))
    parser.add_argument("--intake", metavar="COL",
                        help=_("column with each patient's intake score (default: the score at their first session)"))
    parser.add_argument("--reliable-change", type=float, metavar="RC",
                        help=_("reliable change in score points, for the fallback rule and the validation "
                               "(default: OQ-45.2, 14 for totals or 14/45 for mean item scores, unless "
                               "--lower-is-worse)"))
    parser.add_argument("--cutoff", type=float, metavar="C",
                        help=_("clinical cut-off (default: OQ-45.2, 63.5 or 63.5/45)"))
    parser.add_argument("--no-validation", action="store_true", help=_("leave out the cross-validation (faster)"))
    parser.set_defaults(func=run)


def run(args) -> dict:
    from core.clinical.signal import published_settings, signal_report

    validated = validated_from_args(args)
    data = validated.data
    if data.empty:
        raise InputError(_("No row can be used: see the reasons in the validation (every row was left out)."))
    if args.intake is not None and args.intake not in data.columns:
        raise InputError(_("There is no column '{column}' to use as the intake score.").format(column=args.intake))
    if args.reliable_change is not None and not args.reliable_change > 0:
        raise InputError(_("--reliable-change must be a positive number of score points."))
    settings, assumed = published_settings(data["symptoms"], not args.lower_is_worse, args.reliable_change,
                                           args.cutoff, args.intake)
    report = signal_report(data, settings, validation=not args.no_validation)
    if assumed:
        report["definition"] += " " + assumed
    report["excluded_rows"] = validated.excluded_records()
    report["n_observations"] = int(len(data))
    return report
