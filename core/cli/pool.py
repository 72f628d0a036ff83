"""``python -m core pool``: random-effects meta-analysis of given effects (stage 2 alone), with optional
study-level moderators (meta-regression), leave-one-out and influence diagnostics."""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.errors import InputError, some_names
from core.i18n import _


def add_meta_flags(parser) -> None:
    """``--mods COL[,COL]`` and ``--leave-one-out``, shared by ``pool`` and ``ipd-meta``."""
    parser.add_argument("--mods", metavar="COL[,COL]",
                        help=_("study-level moderators: a meta-regression on these columns (one value per study), "
                               "as metafor's rma(mods = ~ ...)"))
    parser.add_argument("--leave-one-out", action="store_true",
                        help=_("add each study left out in turn (metafor's leave1out) and influence diagnostics "
                               "(metafor's influence)"))


def moderator_columns(text: str | None) -> list[str]:
    """``"a,b"`` → ``["a", "b"]`` (blank: none)."""
    return [c.strip() for c in (text or "").split(",") if c.strip()]


def add_parser(sub) -> None:
    parser = sub.add_parser("pool", help=_("random-effects meta-analysis of given effects (stage 2 alone)"))
    parser.add_argument("data", help=_("CSV or Excel file, one row per study"))
    parser.add_argument("--label", required=True, help=_("column with the study label"))
    parser.add_argument("--estimate", required=True, help=_("column with the effect estimate"))
    parser.add_argument("--se", required=True, help=_("column with the estimate's standard error"))
    parser.add_argument("--method", choices=["reml", "dl"], default="reml",
                        help=_("between-study variance: REML or DerSimonian-Laird"))
    parser.add_argument("--knapp-hartung", action="store_true", help=_("Knapp-Hartung adjustment (t distribution)"))
    add_meta_flags(parser)
    parser.add_argument("--sheet", help=_("Excel sheet (default: the first)"))
    parser.add_argument("--out", help=_("where to write the report (default: standard output)"))
    parser.set_defaults(func=run)


def run(args) -> dict:
    from core.intake.reading import read_table
    from core.intake.validation import LARGEST_VALUE, MISSING_TEXTS, format_rows, parse_numbers
    from core.reporting.json_report import clean
    from core.stats.meta import diagnostics_dict, meta_regression, pool_effects

    raw = read_table(args.data, sheet=args.sheet)
    mods = moderator_columns(args.mods)
    for col in (args.label, args.estimate, args.se, *mods):
        if col not in raw.columns:
            raise InputError(_("The file has no column '{column}'; its columns are: {columns}.").format(
                column=col, columns=some_names(raw.columns)))
    frame = raw.frame
    est, est_missing, est_bad = parse_numbers(frame[args.estimate], raw.decimal)
    se, se_missing, se_bad = parse_numbers(frame[args.se], raw.decimal)
    label = frame[args.label].astype(str).str.strip()
    est_text = frame[args.estimate].astype(str).str.strip()
    se_text = frame[args.se].astype(str).str.strip()
    # Every reason of every row, vectorised (a file of a million rows takes seconds, not minutes).
    checks = [
        (label.str.lower().isin(MISSING_TEXTS), pd.Series(_("label missing"), index=frame.index)),
        (est_missing | est_bad, format_rows(_("estimate '{value}' is not a number"), value=est_text)),
        (est.abs() > LARGEST_VALUE, format_rows(_("estimate {value} is beyond ±{limit:,.0f}"), value=est_text,
                                                limit=LARGEST_VALUE)),
        (se_missing | se_bad, format_rows(_("standard error '{value}' is not a number"), value=se_text)),
        # 0 is kept (metafor's REML keeps it, DL refuses it: core.stats.meta says so); a negative SE is an error
        (~(se_missing | se_bad) & (se < 0), format_rows(_("standard error {value} is negative"), value=se_text)),
        (se > LARGEST_VALUE, format_rows(_("standard error {value} is beyond ±{limit:,.0f}"), value=se_text,
                                         limit=LARGEST_VALUE)),
    ]
    for col in mods:  # metafor leaves out a study without a moderator value ("Studies with NAs omitted")
        checks.append((frame[col].astype(str).str.strip().str.lower().isin(MISSING_TEXTS),
                       pd.Series(_("moderator '{column}' missing").format(column=col), index=frame.index)))
    reasons = pd.Series("", index=frame.index, dtype=object)
    for mask, text in checks:
        mask = mask.to_numpy(dtype=bool, na_value=False)
        old = reasons[mask]
        reasons[mask] = np.where(old.eq(""), text[mask], old + "; " + text[mask])
    ok = reasons.eq("").to_numpy()
    excluded = [{"row": int(r), "reason": str(t)} for r, t in zip(frame["row"][~ok], reasons[~ok])]
    est = est.where(est.abs() <= LARGEST_VALUE)
    if mods:
        result = meta_regression(est[ok].to_numpy(), se[ok].to_numpy(), frame.loc[ok, mods],
                                 labels=label[ok].tolist(), method=args.method, knapp_hartung=args.knapp_hartung)
    else:
        result = pool_effects(est[ok].to_numpy(), se[ok].to_numpy(), labels=label[ok].tolist(),
                              method=args.method, knapp_hartung=args.knapp_hartung)
    report = result.to_dict()
    if args.leave_one_out:
        report.update(diagnostics_dict(result))
    report["excluded_rows"] = excluded
    return clean(report)
