"""``python -m core analyze``: validate a session-by-session file and fit the model ladder."""
from __future__ import annotations

from core.cli.common import add_role_flags, validated_from_args
from core.errors import InputError
from core.i18n import _


def add_parser(sub) -> None:
    parser = sub.add_parser("analyze", help=_("validate a session-by-session file and fit the model ladder"))
    add_role_flags(parser)
    parser.set_defaults(func=run)


def fitted_ladder(args, keep_data: bool = True):
    """The validated data and the ladder fitted on it; exit 2 when no model can be fitted.
    ``keep_data=False``: the models keep their estimates only (what the JSON report needs), and the
    file's columns other than the roles are not kept either."""
    from core.stats.models import fit_ladder

    validated = validated_from_args(args, only_roles=not keep_data)
    ladder = fit_ladder(validated.data, cell_reasons=validated.cell_reasons, keep_data=keep_data)
    if not ladder.models:
        raise InputError(_("{file}: no model can be fitted. {reason}").format(
            file=args.data, reason=next(iter(ladder.errors.values()))))
    return validated, ladder


def run(args) -> dict:
    from core.reporting.json_report import analysis_report

    validated, ladder = fitted_ladder(args, keep_data=False)
    return analysis_report(validated, ladder)
