"""Command line: ``python -m core <subcommand> DATA ... --out REPORT.json``.

Exit 0: report written. Exit 2: the input cannot be analysed (one plain sentence on stderr).
Any other exit code is a bug. See ``shared/contracts/cli-and-reports.md`` and the README.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.errors import InputError, ModelError


def _range(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        lo, hi = (float(x.replace(",", ".")) for x in text.split(",", 1)) if text.count(",") == 1 \
            else (float(x) for x in text.split(";" if ";" in text else ":"))
    except ValueError:
        raise InputError(f"The range '{text}' is not of the form MIN,MAX (for example 1,7).") from None
    if lo > hi:
        raise InputError(f"The range '{text}' has its minimum above its maximum.")
    return lo, hi


def _write(report: dict | str, out: str | None) -> None:
    text = report if isinstance(report, str) else json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False)
    if out:
        Path(out).write_text(text + "\n", encoding="utf-8")
    else:
        sys.stdout.write(text + "\n")


def _validated(args, roles: dict[str, str | None], ranges: dict):
    from core.mapping import ColumnMapping
    from core.reading import read_table
    from core.validation import validate_table

    raw = read_table(args.data, sheet=args.sheet)
    mapping = ColumnMapping(**roles)
    return validate_table(raw, mapping, ranges=ranges)


def _validated_for_models(args):
    ranges = {k: v for k, v in (("alliance", _range(args.alliance_range)),
                                ("symptoms", _range(args.symptoms_range))) if v}
    return _validated(args, {"patient": args.patient, "session": args.session,
                             "symptoms": args.symptoms, "alliance": args.alliance,
                             "therapist": args.therapist}, ranges)


def cmd_analyze(args) -> dict:
    from core.models import fit_ladder
    from core.report import analysis_report

    validated = _validated_for_models(args)
    ladder = fit_ladder(validated.data)
    if not ladder.models:
        first = next(iter(ladder.errors.values()))
        raise InputError(f"{args.data}: no model can be fitted. {first}")
    return analysis_report(validated, ladder)


def cmd_pool(args) -> dict:
    from core.meta import pool_effects
    from core.reading import read_table
    from core.report import clean
    from core.validation import MISSING_TEXTS, parse_numbers

    raw = read_table(args.data, sheet=args.sheet)
    for col in (args.label, args.estimate, args.se):
        if col not in raw.columns:
            raise InputError(f"The file has no column '{col}'; its columns are: {', '.join(raw.columns)}.")
    frame = raw.frame
    est, est_missing, est_bad = parse_numbers(frame[args.estimate], raw.decimal)
    se, se_missing, se_bad = parse_numbers(frame[args.se], raw.decimal)
    label = frame[args.label].astype(str).str.strip()
    reasons = []
    for k in range(len(frame)):
        why = []
        if label.iloc[k].lower() in MISSING_TEXTS:
            why.append("label missing")
        if est_missing.iloc[k] or est_bad.iloc[k]:
            why.append(f"estimate '{frame[args.estimate].iloc[k]}' is not a number")
        if se_missing.iloc[k] or se_bad.iloc[k]:
            why.append(f"standard error '{frame[args.se].iloc[k]}' is not a number")
        elif not se.iloc[k] > 0:
            why.append(f"standard error {frame[args.se].iloc[k]} is not positive")
        reasons.append("; ".join(why))
    ok = [r == "" for r in reasons]
    excluded = [{"row": int(frame["row"].iloc[k]), "reason": r} for k, r in enumerate(reasons) if r]
    result = pool_effects(est[ok].to_numpy(), se[ok].to_numpy(), labels=label[ok].tolist(),
                          method=args.method, knapp_hartung=args.knapp_hartung)
    report = result.to_dict()
    report["excluded_rows"] = excluded
    return clean(report)


def cmd_ipd_meta(args) -> dict:
    from core.meta import ipd_meta_analysis
    from core.report import clean

    ranges = {k: v for k, v in (("alliance", _range(args.alliance_range)),
                                ("symptoms", _range(args.symptoms_range))) if v}
    validated = _validated_studies(args, ranges)
    data = validated.data
    result = ipd_meta_analysis(data, study="study", patient="patient", session="session",
                               alliance="alliance", symptoms="symptoms", method=args.method,
                               knapp_hartung=args.knapp_hartung, interaction=args.interaction)
    report = result.to_dict()
    report["n_observations"] = int(len(data))
    report["n_patients"] = int(data["patient"].nunique())
    report["n_studies"] = int(data["study"].nunique())
    report["excluded_rows"] = validated.excluded_records()
    report["notes"] = list(validated.notes)
    return clean(report)


def _validated_studies(args, ranges: dict):
    from core.mapping import ColumnMapping
    from core.reading import read_table
    from core.validation import validate_studies

    raw = read_table(args.data, sheet=args.sheet)
    mapping = ColumnMapping(patient=args.patient, session=args.session, alliance=args.alliance,
                            symptoms=args.symptoms)
    return validate_studies(raw, mapping, args.study, ranges=ranges)


def cmd_report(args) -> str:
    from core.html_report import build_html_report
    from core.models import BuilderOptions, fit_custom_model, fit_ladder

    validated = _validated_for_models(args)
    ladder = fit_ladder(validated.data)
    if not ladder.models:
        raise InputError(f"{args.data}: no model can be fitted. {next(iter(ladder.errors.values()))}")
    custom = []
    if args.builder:
        options = BuilderOptions(direction="symptoms_to_alliance" if args.reverse else "alliance_to_symptoms",
                                 detrend=args.detrend, interaction=args.interaction,
                                 covariates=tuple(args.covariate or ()),
                                 random_slope_within=args.random_slope_within,
                                 therapist_level=args.therapist_level)
        custom.append(fit_custom_model(validated.data, options))
    return build_html_report(validated, ladder, custom, seed=args.seed)


def _add_data_flags(a) -> None:
    a.add_argument("data")
    a.add_argument("--patient", required=True)
    a.add_argument("--session", required=True)
    a.add_argument("--symptoms", required=True)
    a.add_argument("--alliance")
    a.add_argument("--therapist")
    a.add_argument("--alliance-range")
    a.add_argument("--symptoms-range")
    a.add_argument("--sheet")
    a.add_argument("--out")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("analyze", help="validate a session-by-session file and fit the model ladder")
    _add_data_flags(a)
    a.set_defaults(func=cmd_analyze)

    r = sub.add_parser("report", help="the self-contained HTML report (ladder, builder model, figures)")
    _add_data_flags(r)
    r.add_argument("--builder", action="store_true", help="add a model from the model builder")
    r.add_argument("--reverse", action="store_true", help="builder: symptoms -> alliance")
    r.add_argument("--detrend", action="store_true", help="builder: control for time")
    r.add_argument("--interaction", action="store_true", help="builder: between x within")
    r.add_argument("--covariate", action="append", help="builder: covariate column (repeat)")
    r.add_argument("--random-slope-within", action="store_true", help="builder: random slope for within")
    r.add_argument("--therapist-level", action="store_true", help="builder: therapist random intercept")
    r.add_argument("--seed", type=int, help="seed to record (only simulated data use one)")
    r.set_defaults(func=cmd_report)

    m = sub.add_parser("pool", help="random-effects meta-analysis of given effects (stage 2 alone)")
    m.add_argument("data")
    m.add_argument("--label", required=True)
    m.add_argument("--estimate", required=True)
    m.add_argument("--se", required=True)
    m.add_argument("--method", choices=["reml", "dl"], default="reml")
    m.add_argument("--knapp-hartung", action="store_true")
    m.add_argument("--sheet")
    m.add_argument("--out")
    m.set_defaults(func=cmd_pool)

    i = sub.add_parser("ipd-meta", help="two-stage individual-participant-data meta-analysis")
    i.add_argument("data")
    i.add_argument("--study", required=True)
    i.add_argument("--patient", required=True)
    i.add_argument("--session", required=True)
    i.add_argument("--alliance", required=True)
    i.add_argument("--symptoms", required=True)
    i.add_argument("--method", choices=["reml", "dl"], default="reml")
    i.add_argument("--knapp-hartung", action="store_true")
    i.add_argument("--interaction", action="store_true",
                   help="add the cross-level interaction (patient mean x lagged deviation)")
    i.add_argument("--alliance-range")
    i.add_argument("--symptoms-range")
    i.add_argument("--sheet")
    i.add_argument("--out")
    i.set_defaults(func=cmd_ipd_meta)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        report = args.func(args)
    except (InputError, ModelError) as err:
        name = getattr(args, "data", None)
        message = str(err)
        if name and name not in message:
            message = f"{name}: {message}"
        print(f"error: {message}", file=sys.stderr)
        return 2
    _write(report, args.out)
    return 0
