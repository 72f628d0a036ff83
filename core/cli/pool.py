"""``python -m core pool``: random-effects meta-analysis of given effects (stage 2 alone)."""
from __future__ import annotations

from core.errors import InputError, some_names


def add_parser(sub) -> None:
    parser = sub.add_parser("pool", help="random-effects meta-analysis of given effects (stage 2 alone)")
    parser.add_argument("data")
    parser.add_argument("--label", required=True)
    parser.add_argument("--estimate", required=True)
    parser.add_argument("--se", required=True)
    parser.add_argument("--method", choices=["reml", "dl"], default="reml")
    parser.add_argument("--knapp-hartung", action="store_true")
    parser.add_argument("--sheet")
    parser.add_argument("--out")
    parser.set_defaults(func=run)


def run(args) -> dict:
    from core.intake.reading import read_table
    from core.intake.validation import MISSING_TEXTS, parse_numbers
    from core.reporting.json_report import clean
    from core.stats.meta import pool_effects

    raw = read_table(args.data, sheet=args.sheet)
    for col in (args.label, args.estimate, args.se):
        if col not in raw.columns:
            raise InputError(f"The file has no column '{col}'; its columns are: {some_names(raw.columns)}.")
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
