"""``python -m core ipd-meta``: two-stage individual-participant-data meta-analysis."""
from __future__ import annotations

from core.cli.common import add_role_flags, measure_ranges, read_data
from core.cli.pool import add_meta_flags, moderator_columns
from core.i18n import _


def add_parser(sub) -> None:
    parser = sub.add_parser("ipd-meta", help=_("two-stage individual-participant-data meta-analysis"))
    add_role_flags(parser, optional=())
    parser.add_argument("--study", required=True, help=_("column with the study label"))
    parser.add_argument("--alliance", required=True, help=_("column with the alliance score"))
    parser.add_argument("--method", choices=["reml", "dl"], default="reml",
                        help=_("between-study variance: REML or DerSimonian-Laird"))
    parser.add_argument("--knapp-hartung", action="store_true", help=_("Knapp-Hartung adjustment (t distribution)"))
    parser.add_argument("--interaction", action="store_true",
                        help=_("add the cross-level interaction (patient mean x lagged deviation)"))
    parser.add_argument("--exclude-study", action="append", default=[], metavar="LABEL",
                        help=_("leave this study out of the analysis (repeat for several)"))
    add_meta_flags(parser)
    parser.set_defaults(func=run)


def run(args) -> dict:
    from core.intake.mapping import ColumnMapping
    from core.intake.validation import validate_studies
    from core.reporting.json_report import clean
    from core.stats.meta import diagnostics_dict, ipd_meta_analysis

    raw = read_data(args)
    mapping = ColumnMapping(patient=args.patient, session=args.session, alliance=args.alliance,
                            symptoms=args.symptoms)
    mods = moderator_columns(args.mods)
    validated = validate_studies(raw, mapping, args.study, ranges=measure_ranges(args))
    data = validated.data
    result = ipd_meta_analysis(data, study="study", patient="patient", session="session",
                               alliance="alliance", symptoms="symptoms", method=args.method,
                               knapp_hartung=args.knapp_hartung, interaction=args.interaction,
                               exclude=args.exclude_study, moderators=mods)
    report = result.to_dict()
    if args.leave_one_out:
        for direction, pooled in result.pooled.items():
            report["pooled"][direction].update(diagnostics_dict(pooled))
    report["n_observations"] = int(len(data))
    report["n_patients"] = int(data["patient"].nunique())
    report["n_studies"] = int(data["study"].nunique())
    report["excluded_rows"] = validated.excluded_records()
    report["notes"] = list(validated.notes)
    return clean(report)
