"""``python -m core report``: the Model explorer's self-contained HTML report."""
from __future__ import annotations

from core.cli.analyze import fitted_ladder
from core.cli.common import add_role_flags
from core.i18n import _


def add_parser(sub) -> None:
    parser = sub.add_parser("report", help=_("the self-contained HTML report (ladder, builder model, figures)"))
    add_role_flags(parser)
    parser.add_argument("--builder", action="store_true", help=_("add a model from the model builder"))
    parser.add_argument("--reverse", action="store_true", help=_("builder: symptoms -> alliance"))
    parser.add_argument("--detrend", action="store_true", help=_("builder: control for time"))
    parser.add_argument("--interaction", action="store_true", help=_("builder: between x within"))
    parser.add_argument("--covariate", action="append", help=_("builder: covariate column (repeat)"))
    parser.add_argument("--random-slope-within", action="store_true", help=_("builder: random slope for within"))
    parser.add_argument("--therapist-level", action="store_true", help=_("builder: therapist random intercept"))
    parser.add_argument("--seed", type=int, help=_("seed to record (only simulated data use one)"))
    parser.add_argument("--sessions", help=_("RI-CLPM section: sessions FIRST-LAST (default: all, at most 12)"))
    parser.add_argument("--free-lags", action="store_true",
                        help=_("RI-CLPM section: lagged effects free per session pair"))
    parser.add_argument("--no-signal", action="store_true", help=_("leave out the early-warning signal section"))
    parser.add_argument("--lower-is-worse", action="store_true", help=_("signal: a lower symptom score is worse"))
    parser.add_argument("--reliable-change", type=float, help=_("signal: reliable change (default: OQ-45.2's)"))
    parser.add_argument("--intake", help=_("signal: column with each patient's intake score"))
    parser.add_argument("--post", help=_("early alliance and outcome section: column with a post-treatment symptom "
                                         "score, one value per patient (default: the last symptom score after the "
                                         "early sessions)"))
    parser.add_argument("--early-sessions", default="1-4", metavar="FIRST-LAST",
                        help=_("early alliance and outcome section: sessions whose alliance is averaged (default 1-4)"))
    parser.set_defaults(func=run)


def run(args) -> str:
    from core.reporting.html_report import build_html_report
    from core.stats.models import BuilderOptions, fit_custom_model

    validated, ladder = fitted_ladder(args)
    custom = []
    if args.builder:
        options = BuilderOptions(direction="symptoms_to_alliance" if args.reverse else "alliance_to_symptoms",
                                 detrend=args.detrend, interaction=args.interaction,
                                 covariates=tuple(args.covariate or ()),
                                 random_slope_within=args.random_slope_within,
                                 therapist_level=args.therapist_level)
        custom.append(fit_custom_model(validated.data, options, cell_reasons=validated.cell_reasons))
    riclpm = "auto"
    if args.sessions or args.free_lags:
        from core.reporting.riclpm_report import fit_for_report
        from core.stats.riclpm import parse_session_range

        first, last = parse_session_range(args.sessions) if args.sessions else (None, None)
        riclpm = fit_for_report(validated.data, first, last, free_lags=args.free_lags)
    signal = False
    if not args.no_signal:
        from core.clinical.signal import published_settings

        signal, _assumed = published_settings(validated.data["symptoms"], not args.lower_is_worse, args.reliable_change,
                                       None, args.intake)
    outcome = "auto"
    if args.post or args.early_sessions != "1-4":
        from core.reporting.alliance_outcome_report import for_clinic
        from core.stats.alliance_outcome import parse_window

        outcome = for_clinic(validated.data, early=parse_window(args.early_sessions),
                             post="post" if args.post else None, post_label=args.post)
    return build_html_report(validated, ladder, custom, seed=args.seed, riclpm=riclpm,
                             signal=signal, alliance_outcome=outcome)
