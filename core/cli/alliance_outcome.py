"""``python -m core alliance-outcome``: early alliance → post-treatment outcome, per study and pooled."""
from __future__ import annotations

from core.cli.common import add_role_flags, measure_ranges, read_data
from core.i18n import _


def add_parser(sub) -> None:
    parser = sub.add_parser("alliance-outcome",
                            help=_("early alliance as a predictor of post-treatment outcome, per study and pooled"))
    add_role_flags(parser, optional=())
    parser.add_argument("--alliance", required=True, help=_("column with the alliance score"))
    parser.add_argument("--study", help=_("column with the study label (default: one study)"))
    parser.add_argument("--post", help=_("column with a post-treatment symptom score, one value per patient "
                                         "(default: the patient's last symptom score after the early sessions)"))
    parser.add_argument("--early-sessions", default="1-4", metavar="FIRST-LAST",
                        help=_("sessions whose alliance scores are averaged (default 1-4)"))
    parser.add_argument("--method", choices=["reml", "dl"], default="reml",
                        help=_("between-study variance: REML or DerSimonian-Laird"))
    parser.add_argument("--knapp-hartung", action="store_true", help=_("Knapp-Hartung adjustment (t distribution)"))
    parser.set_defaults(func=run)


def run(args) -> dict:
    from core.intake.mapping import ColumnMapping
    from core.intake.validation import validate_studies, validate_table
    from core.reporting.alliance_outcome_report import methods_sentence
    from core.reporting.json_report import clean
    from core.stats.alliance_outcome import alliance_outcome, parse_window

    early = parse_window(args.early_sessions)  # refused before the file is read
    raw = read_data(args)
    mapping = ColumnMapping(patient=args.patient, session=args.session, alliance=args.alliance,
                            symptoms=args.symptoms, post=args.post)
    ranges = measure_ranges(args)
    validated = (validate_studies(raw, mapping, args.study, ranges=ranges) if args.study
                 else validate_table(raw, mapping, ranges=ranges))
    result = alliance_outcome(validated.data, early=early, post="post" if args.post else None,
                              study="study" if args.study else None, method=args.method,
                              knapp_hartung=args.knapp_hartung, post_label=args.post)
    report = result.to_dict()
    report["excluded_rows"] = sorted(validated.excluded_records() + report["excluded_rows"],
                                     key=lambda e: (e["row"] is None, e["row"] or 0))
    report["methods_sentence"] = methods_sentence(result)
    report["notes"] = list(validated.notes)
    return clean(report)
