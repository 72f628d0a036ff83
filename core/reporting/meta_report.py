"""Meta-analysis diagnostics as people read them: the meta-regression's table and test, leave-one-out,
influence and Egger's test in tables and plain sentences (issue 27).

The Reciprocal dynamics page shows these; ``python -m core pool`` / ``ipd-meta`` write the same numbers
(:mod:`core.stats.meta`). Tables keep English column keys; :func:`headers` gives the ones people read.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.i18n import N_, _
from core.reporting.formatting import format_number
from core.reporting.tables import _p_phrase
from core.stats.meta import INTERCEPT, MetaRegressionResult, PoolResult

#: Display headers of this module's tables (the frames and their CSV keep the keys).
HEADERS = {
    "term": N_("Term"), "estimate": N_("Estimate"), "se": N_("SE"), "z": "z", "t": "t", "p": "p",
    "ci_low": N_("95% CI low"), "ci_high": N_("95% CI high"), "left_out": N_("Study left out"),
    "tau2": "τ²", "i2": N_("I² (%)"), "study": N_("Study"), "rstudent": N_("Studentized residual"),
    "dffits": "DFFITS", "cook_d": N_("Cook's distance"), "cov_r": N_("Covariance ratio"),
    "tau2_del": N_("τ² without it"), "hat": N_("Hat value"), "weight": N_("Weight (%)"),
    "influential": N_("Influential"),
}


def headers(frame: pd.DataFrame) -> dict[str, str]:
    """The display header of each column of ``frame`` this module knows, in the current language."""
    return {c: _(HEADERS[c]) for c in frame.columns if c in HEADERS}


def term_name(term: str) -> str:
    """A meta-regression term as shown: the intercept in words, a moderator by its name."""
    return _("Intercept") if term == INTERCEPT else term


def meta_regression_frame(result: MetaRegressionResult) -> pd.DataFrame:
    """One row per coefficient: ``term, estimate, se, z|t, p, ci_low, ci_high``."""
    stat = "t" if result.knapp_hartung else "z"
    frame = result.coefficients.rename(columns={"stat": stat}).copy()
    frame["term"] = frame["term"].map(term_name)
    return frame[["term", "estimate", "se", stat, "p", "ci_low", "ci_high"]]


def meta_regression_sentences(result: MetaRegressionResult) -> list[str]:
    """The omnibus test of the moderators, the residual heterogeneity and R², in words."""
    terms = [t for t in result.coefficients["term"] if t != INTERCEPT]
    if result.knapp_hartung:
        test = _("F({df1}, {df2}) = {value}, {p}").format(df1=result.qm_df, df2=result.k - len(result.coefficients),
                                                          value=format_number(result.qm, 2), p=_p_phrase(result.qm_p))
    else:
        test = _("QM({df}) = {value}, {p}").format(df=result.qm_df, value=format_number(result.qm, 2),
                                                   p=_p_phrase(result.qm_p))
    out = [_("Test of the moderators ({terms}): {test}.").format(terms=", ".join(terms), test=test)]
    if np.isfinite(result.r2):
        out.append(_("They account for {r2}% of the between-study variance (R², as metafor computes it); residual "
                     "τ² = {tau2}, residual I² = {i2}.").format(
            r2=format_number(result.r2, 1), tau2=format_number(result.tau2, 4), i2=_percent(result.i2)))
    if np.isfinite(result.q):
        out.append(_("Residual heterogeneity: QE({df}) = {q}, {p}.").format(
            df=result.k - len(result.coefficients), q=format_number(result.q, 2), p=_p_phrase(result.q_p)))
    return out


def _percent(value: float) -> str:
    return format_number(value, 1) + "%" if np.isfinite(value) else "—"


def leave_one_out_frame(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`core.stats.meta.leave_one_out` for display: ``left_out, estimate, ci_low, ci_high, p, tau2, i2``."""
    return table.rename(columns={"label": "left_out"})[["left_out", "estimate", "ci_low", "ci_high", "p", "tau2",
                                                         "i2"]]


def influence_frame(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`core.stats.meta.influence` for display (``dfbs_*`` columns left to the CSV)."""
    shown = table.rename(columns={"label": "study"})[["study", "rstudent", "dffits", "cook_d", "cov_r", "tau2_del",
                                                      "hat", "weight", "influential"]].copy()
    shown["influential"] = shown["influential"].map(lambda v: _("yes") if v else "")
    return shown


def sensitivity_sentences(result: PoolResult, loo: pd.DataFrame, infl: pd.DataFrame) -> list[str]:
    """Leave-one-out and influence in words: the range of the pooled estimate with one study left out,
    whether any 95% CI then crosses 0 differently, and the studies metafor would mark as influential."""
    out = []
    ok = loo.dropna(subset=["estimate"])
    if len(ok):
        low, high = ok.loc[ok["estimate"].idxmin()], ok.loc[ok["estimate"].idxmax()]
        out.append(_("Leaving out one study at a time, the pooled estimate lies between {low} (without {low_study}) "
                     "and {high} (without {high_study}); with all studies it is {estimate}.").format(
            low=format_number(low["estimate"], 3), low_study=low["label"], high=format_number(high["estimate"], 3),
            high_study=high["label"], estimate=format_number(result.estimate, 3)))
        excludes_zero = (result.ci_low > 0) or (result.ci_high < 0)
        flips = ok[((ok["ci_low"] > 0) | (ok["ci_high"] < 0)) != excludes_zero]["label"].tolist()
        if flips:
            out.append((_("Without {studies}, the 95% CI would include 0.") if excludes_zero else
                        _("Without {studies}, the 95% CI would exclude 0.")).format(studies=", ".join(map(str, flips))))
    marked = infl[infl["influential"]]["label"].tolist()
    out.append(_("Influential by metafor's criteria (DFFITS, Cook's distance, hat value, DFBETAS): {studies}.").format(
        studies=", ".join(map(str, marked))) if marked else
        _("No study is influential by metafor's criteria (DFFITS, Cook's distance, hat value, DFBETAS)."))
    return out


def egger_sentence(regtest: dict | None) -> str:
    """Egger's test in words (or why it is not there)."""
    if not regtest:
        return _("Egger's test needs at least 3 studies.")
    if regtest.get("z") is None:
        return regtest.get("note") or _("Egger's test could not be computed.")
    stat = "t" if regtest.get("test") == "t" else "z"
    text = _("Egger's regression test for funnel-plot asymmetry: {stat} = {value}, {p}").format(
        stat=stat + (f"({regtest['df']})" if regtest.get("df") else ""), value=format_number(regtest["z"], 2),
        p=_p_phrase(regtest["p"]))
    if regtest.get("limit_estimate") is not None:
        text += _("; estimate as the standard error goes to 0: {estimate} (95% CI {low} to {high})").format(
            estimate=format_number(regtest["limit_estimate"], 3), low=format_number(regtest["limit_ci_low"], 3),
            high=format_number(regtest["limit_ci_high"], 3))
    return text + ". " + _("Asymmetry can come from small-study effects or publication bias, and also from "
                           "heterogeneity; with fewer than 10 studies the test has little power.")


def pooled_r_text(pooled_r: dict) -> str:
    """``r = −0.28 (95% CI −0.35 to −0.21)``."""
    return _("pooled r = {r} (95% CI {low} to {high}; Fisher's z, back-transformed)").format(
        r=format_number(pooled_r["r"], 2), low=format_number(pooled_r["ci_low"], 2),
        high=format_number(pooled_r["ci_high"], 2))

