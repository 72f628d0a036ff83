"""``python -m core fit``: one model in lme4 notation, with lme4's numbers (docs/cli-and-reports.md)."""
from __future__ import annotations

from core.cli.common import add_role_flags, validated_from_args
from core.errors import InputError
from core.i18n import _


def add_parser(sub) -> None:
    parser = sub.add_parser("fit", help=_("fit one linear mixed model given in lme4 notation"))
    add_role_flags(parser)
    parser.add_argument("--formula", required=True,
                        help=_('lme4 formula, e.g. "symptoms ~ alliance_within + time + (time | patient)"'))
    parser.add_argument("--df", choices=("satterthwaite", "kr"), default="satterthwaite",
                        help=_("degrees of freedom of the fixed effects' t tests: Satterthwaite (lmerTest, the "
                               "default) or kr, Kenward–Roger with its adjusted standard errors (pbkrtest)"))
    parser.add_argument("--confint", choices=("wald", "profile", "boot"),
                        help=_("95%% intervals for the fixed effects, the random-effect SDs and correlations and "
                               "sigma, as lme4's confint(): wald, profile (likelihood profile) or boot "
                               "(parametric bootstrap, percentile)"))
    parser.add_argument("--nboot", type=int, default=1000, help=_("bootstrap samples for --confint boot (1000)"))
    parser.add_argument("--seed", type=int, default=1, help=_("seed of --confint boot (1)"))
    parser.add_argument("--workers", type=int, help=_("processes for --confint boot (default: every core)"))
    parser.add_argument("--scheduler", help=_("--confint boot on a Dask cluster: the scheduler's address, e.g. "
                                              "tcp://10.0.0.5:8786 (default: this machine's cores)"))
    parser.set_defaults(func=run)


def run(args) -> dict:
    from core.reporting.json_report import fit_report
    from core.stats.formula import fit_formula

    if args.confint == "boot" and args.nboot < 1:
        raise InputError(_("--nboot must be at least 1."))
    if args.workers is not None and args.workers < 1:
        raise InputError(_("--workers must be at least 1."))
    validated = validated_from_args(args)
    headers = {role: column for role, column in validated.mapping.used().items()}
    fit = fit_formula(validated.data, args.formula, role_headers=headers, cell_reasons=validated.cell_reasons,
                      df_method=args.df)
    report = fit_report(validated, fit)
    if args.confint:
        from core.reporting.json_report import clean
        from core.stats.intervals import confint

        runner = None
        if args.confint == "boot" and args.scheduler:
            from core.stats.power_run import DaskRunner

            runner = DaskRunner(args.scheduler)
        intervals = confint(fit, args.confint, nboot=args.nboot, seed=args.seed, workers=args.workers, runner=runner)
        report["confint"] = intervals.records()
        report["confint_method"] = args.confint
        report["warnings"] = list(dict.fromkeys(list(report.get("warnings", [])) + list(intervals.warnings)))
        report = clean(report)
    return report
