"""``python -m core fit``: one model in lme4 notation, with lme4's numbers (docs/cli-and-reports.md)."""
from __future__ import annotations

from core.cli.common import add_role_flags, validated_from_args
from core.i18n import _


def add_parser(sub) -> None:
    parser = sub.add_parser("fit", help=_("fit one linear mixed model given in lme4 notation"))
    add_role_flags(parser)
    parser.add_argument("--formula", required=True,
                        help=_('lme4 formula, e.g. "symptoms ~ alliance_within + time + (time | patient)"'))
    parser.set_defaults(func=run)


def run(args) -> dict:
    from core.reporting.json_report import fit_report
    from core.stats.formula import fit_formula

    validated = validated_from_args(args)
    headers = {role: column for role, column in validated.mapping.used().items()}
    fit = fit_formula(validated.data, args.formula, role_headers=headers, cell_reasons=validated.cell_reasons)
    return fit_report(validated, fit)
