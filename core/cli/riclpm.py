"""``python -m core riclpm``: the random-intercept cross-lagged panel model (RI-CLPM) of alliance
and symptoms over sessions, by full-information maximum likelihood, with lavaan's numbers.

Reading: the file is validated once per measure, so that a session where only one of the two
questionnaires has a valid score still gives that score to the model (FIML uses it, as lavaan's
``missing = "ml"`` does). Rows with neither score usable are listed in ``excluded_rows``; rows
with one score usable are listed in ``partially_used_rows`` with the reason for the other.
"""
from __future__ import annotations

from core.cli.common import add_role_flags, measure_ranges, read_data
from core.i18n import N_, _, ngettext
from core.intake.mapping import role_name


def add_parser(sub) -> None:
    parser = sub.add_parser("riclpm", help=_("random-intercept cross-lagged panel model (lavaan-equal, FIML)"))
    add_role_flags(parser, optional=("therapist",))  # --therapist is accepted and not used (no therapist level)
    parser.add_argument("--alliance", required=True, help=_("column with the alliance score"))
    parser.add_argument("--sessions", help=_("sessions FIRST-LAST as the waves (default: the first to the last "
                                             "session in the file)"))
    parser.add_argument("--free-lags", action="store_true",
                        help=_("lagged effects free per session pair (default: equal over sessions)"))
    parser.set_defaults(func=run)


def validated_by_measure(raw, mapping, ranges=None):
    """Validate ``raw`` once for alliance and once for symptoms and join them by patient and
    session. Returns ``(data, excluded, partial, notes)``: ``data`` has ``patient, session,
    alliance, symptoms, row`` (a measure NaN where only the other is valid); ``excluded`` the rows
    with neither measure usable (both passes' reasons); ``partial`` the rows used for one measure
    only, with the reason the other is missing."""
    import pandas as pd

    from core.errors import InputError
    from core.intake.mapping import ColumnMapping
    from core.intake.validation import validate_table

    passes = {}
    for measure in ("alliance", "symptoms"):
        one = ColumnMapping(patient=mapping.patient, session=mapping.session,
                            **{measure: getattr(mapping, measure)})
        try:
            passes[measure] = validate_table(raw, one, ranges={k: v for k, v in (ranges or {}).items()
                                                                if k == measure})
        except InputError as err:
            raise InputError(_("{error} ({measure} column '{column}')").format(
                error=err, measure=role_name(measure), column=getattr(mapping, measure))) from None
    cols = ["patient", "session", "row"]
    a = passes["alliance"].data[cols + ["alliance"]]
    s = passes["symptoms"].data[cols + ["symptoms"]]
    data = a.merge(s, on=["patient", "session"], how="outer", suffixes=("", "_s"))
    data["row"] = data["row"].fillna(data["row_s"]).astype(int)
    data = data.drop(columns="row_s").sort_values(["patient", "session"], kind="stable").reset_index(drop=True)
    reasons = {m: dict(zip(p.excluded["row"].astype(int), p.excluded["reason"].astype(str)))
               for m, p in passes.items()}
    used = {m: set(p.data["row"].astype(int)) for m, p in passes.items()}
    excluded, partial = [], []
    used_text = {"alliance": _("{reason} (alliance used)"), "symptoms": _("{reason} (symptoms used)")}
    for row in sorted(set(reasons["alliance"]) | set(reasons["symptoms"])):
        if row in used["alliance"] or row in used["symptoms"]:
            missing = "alliance" if row in reasons["alliance"] else "symptoms"
            other = "symptoms" if missing == "alliance" else "alliance"
            partial.append({"row": row, "reason": used_text[other].format(reason=reasons[missing][row])})
        else:
            parts = []
            for m in ("alliance", "symptoms"):
                for part in reasons[m].get(row, "").split("; "):
                    if part and part not in parts:
                        parts.append(part)
            excluded.append({"row": row, "reason": "; ".join(parts)})
    notes = []
    for p in passes.values():
        notes += [n for n in p.notes if n not in notes]
    if partial:
        notes.append(ngettext("{n} row has a valid score for only one of the two measures; full-information "
                              "maximum likelihood uses the score present (listed in partially_used_rows).",
                              "{n} rows have a valid score for only one of the two measures; full-information "
                              "maximum likelihood uses the score present (listed in partially_used_rows).",
                              len(partial)).format(n=len(partial)))
    columns = ["row", "reason"]
    return data, pd.DataFrame(excluded, columns=columns), pd.DataFrame(partial, columns=columns), notes


#: The report's definitions (English; translated where written).
DEFINITIONS = {
    "waves": N_("sessions FIRST..LAST are the waves; a patient's missed session is a missing wave"),
    "model": N_("RI-CLPM (Hamaker et al., 2015): random intercepts of alliance and symptoms (loadings 1) with "
                "variances and a covariance; within-person components with autoregressive and cross-lagged "
                "effects (equal over sessions unless --free-lags); wave-1 and residual (co)variances per session; "
                "observed intercepts free per session"),
    "estimation": N_("full-information maximum likelihood (lavaan missing = 'ml'); SEs from the observed "
                     "information (Hessian); p-values from z"),
    "fit": N_("as lavaan's fitMeasures: chisq against the unrestricted model (EM), df = means + covariances - "
              "parameters, CFI/TLI against the independence model with free means and variances, RMSEA with N, "
              "AIC/BIC from the log-likelihood with every free parameter including the means"),
    "standardized": N_("std_all as lavaan's standardizedSolution: estimate x SD(predictor) / SD(outcome) of the "
                       "within components; with equal lags one value per session pair"),
    "cross_lagged": N_("within-person carry-over: how far a patient's next-session score departs from that "
                       "patient's own usual level when this session's other score was above the patient's own "
                       "usual level, beyond the next score's own carry-over"),
}


def run(args) -> dict:
    from core.intake.mapping import ColumnMapping
    from core.reporting.json_report import clean, software_versions
    from core.stats.riclpm import fit_riclpm, parse_session_range

    first, last = parse_session_range(args.sessions) if args.sessions else (None, None)
    raw = read_data(args)
    mapping = ColumnMapping(patient=args.patient, session=args.session, alliance=args.alliance,
                            symptoms=args.symptoms)
    data, excluded, partial, notes = validated_by_measure(raw, mapping, measure_ranges(args))
    result = fit_riclpm(data, first, last, free_lags=args.free_lags)
    report = result.to_dict()
    if result.n_rows_outside:
        k = result.n_rows_outside
        notes.append(ngettext("{n} row is from sessions outside {first}-{last} and not part of this model.",
                              "{n} rows are from sessions outside {first}-{last} and not part of this model.",
                              k).format(n=k, first=result.first, last=result.last))
    if len(result.excluded_patients):
        k = len(result.excluded_patients)
        notes.append(ngettext("{n} patient has no score in sessions {first}-{last} and is not in the model "
                              "(excluded_patients).",
                              "{n} patients have no score in sessions {first}-{last} and are not in the model "
                              "(excluded_patients).", k).format(n=k, first=result.first, last=result.last))
    report.update({
        "n_rows_read": int(len(raw.frame)),
        "excluded_rows": excluded.to_dict("records"),
        "partially_used_rows": partial.to_dict("records"),
        "notes": notes,
        "definitions": {key: _(text) for key, text in DEFINITIONS.items()},
        "software": software_versions(),
    })
    return clean(report)
