"""Early alliance as a predictor of post-treatment outcome, per study and pooled (issue 30).

The classic alliance–outcome question (Flückiger et al. 2018; the first result of the IPD
meta-analysis of Flückiger et al. 2020): do patients whose alliance early in treatment was better
end treatment with fewer symptoms, adjusting for where they started?

Per patient (:func:`patient_outcomes`): **early alliance** = the mean of the alliance scores observed
in sessions FIRST–LAST (default 1–4); **intake** = the symptom score of the patient's first session
with one; **post** = a post-treatment score (one value per patient: the *post-treatment score* role
of the upload, or a column named on the command line) or, without one, the patient's last observed
symptom score after session LAST. A patient without all three is left out with the reason.

Stage 1, in each study (:func:`stage1_study`): z-score post, early alliance and intake over the
study's included patients (SD with n − 1); ordinary least squares ``post_z ~ alliance_z + intake_z``:
the coefficient of ``alliance_z`` (the change in post-treatment symptoms, in SDs, per SD of early
alliance at the same intake) with its classical SE, t (n − 3 df), p and 95% CI; and Pearson's r
between early alliance and post. Stage 2 (:func:`alliance_outcome`): the ``pool`` model
(:func:`core.stats.meta.pool_effects`: REML or DL, optional Knapp–Hartung) on the coefficients, and
on Fisher's ``z = atanh(r)`` with SE ``1/sqrt(n - 3)``, back-transformed with ``tanh``.

References
----------
- Flückiger, C., Del Re, A. C., Wampold, B. E., & Horvath, A. O. (2018). The alliance in adult
  psychotherapy: A meta-analytic synthesis. *Psychotherapy, 55*(4), 316-340.
- Flückiger, C., Rubel, J., Del Re, A. C., et al. (2020). The reciprocal relationship between alliance
  and early treatment symptoms: A two-stage individual participant data meta-analysis. *Journal of
  Consulting and Clinical Psychology, 88*(9), 829-843.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from core.errors import InputError
from core.i18n import N_, _
from core.stats.meta import PoolResult, _json_number, pool_effects, sorted_study_labels

#: The default early-alliance window (sessions FIRST–LAST).
DEFAULT_EARLY = (1, 4)
#: The label of the one study when the data have no study column.
ONE_STUDY = "all"
#: Fewest patients a study needs: three OLS coefficients and n − 3 > 0 for Fisher's z.
MIN_PATIENTS = 4
#: Where the outcome comes from (enumerated values of the report's ``outcome``; never translated).
OUTCOME_POST = "post"
OUTCOME_LAST = "last_after_window"
OUTCOME_DEFINITIONS = {
    OUTCOME_POST: N_("the post-treatment score in column '{column}' (one value per patient)"),
    OUTCOME_LAST: N_("the patient's last observed symptom score after session {last} (no post-treatment column "
                     "was given)"),
}


def parse_window(text: str | Sequence[int] | None) -> tuple[int, int]:
    """``"1-4"`` (or ``(1, 4)``) → ``(1, 4)``; one sentence when it is not FIRST-LAST with FIRST ≤ LAST."""
    if text is None:
        return DEFAULT_EARLY
    if isinstance(text, str):
        parts = text.replace("–", "-").split("-")
        try:
            first, last = (int(p.strip()) for p in parts) if len(parts) == 2 else (None, None)
        except ValueError:
            first = last = None
    else:
        first, last = (int(x) for x in text)
    if first is None or last is None or first > last:
        raise InputError(_("The early sessions '{text}' are not of the form FIRST-LAST with FIRST at most LAST "
                           "(for example 1-4).").format(text=text))
    return first, last


def outcome_columns(data: pd.DataFrame, exclude: Sequence[str] = ()) -> list[str]:
    """Columns that can be a post-treatment outcome: the *post-treatment score* role (``post``) when it has a
    value, then every other column whose values are numbers and the same in all of a patient's rows
    (blank cells aside), in the table's order; never a role, ``row`` or a column of ``exclude``."""
    from core.intake.mapping import ROLES
    from core.intake.validation import MISSING_TEXTS

    blank = MISSING_TEXTS | {"nan", "<na>"}
    out = []
    patient = data["patient"].astype(str)
    for col in data.columns:
        if col in exclude or (col in ROLES and col != "post") or col in ("row", "study"):
            continue
        values = _numbers(data[col])
        if not values.notna().any():
            continue
        if col != "post":
            text = data[col].astype("string").fillna("").str.strip()
            present = values.notna()
            if (~text[~present].str.lower().isin(blank)).any():
                continue  # text that is not a number: not a score
            if (values[present].groupby(patient[present]).nunique() > 1).any():
                continue
        out.append(col)
    return sorted(out, key=lambda c: c != "post")


def _numbers(values: pd.Series) -> pd.Series:
    """Floats from a column that may hold text (a post column stored as text): blank and missing texts are NaN."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        out = pd.to_numeric(values, errors="coerce").astype(float)
        return out.where(np.isfinite(out))
    from core.intake.validation import parse_numbers

    parsed, _missing, _bad = parse_numbers(values.astype("string").fillna(""))
    return parsed.where(np.isfinite(parsed))


def _spreadsheet_row(value: Any) -> int | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) else None


def patient_outcomes(data: pd.DataFrame, early: Sequence[int] = DEFAULT_EARLY, post: str | None = None,
                     study: str | None = None, symptoms_range: tuple[float, float] | None = None
                     ) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """One row per patient: ``study, patient, early_alliance, n_early, intake, post, row``, and the
    patients left out as ``[{row, patient, reason}]`` (``row``: the patient's first spreadsheet row).

    ``data``: a validated long table (``patient, session, alliance, symptoms``, ``row``). ``post``: the
    column with each patient's post-treatment score (the same value in each of the patient's rows,
    or in one of them; two different values leave the patient out); None: the last observed symptom
    score after session ``early[1]``. ``symptoms_range``: a post-treatment score outside it is not used.
    """
    first, last = parse_window(early)
    for col in ("patient", "session", "alliance", "symptoms"):
        if col not in data.columns:
            raise InputError(_("The data have no {column} column; map it first.").format(column=col))
    if post is not None and post not in data.columns:
        raise InputError(_("The data have no column '{column}' for the post-treatment score.").format(column=post))
    n = len(data)
    # one integer code per (study, patient): grouping by codes, not by two text keys (a national
    # clinic's million rows in well under a second)
    patients = data["patient"].astype(str).to_numpy()
    studies = data[study].astype(str).to_numpy() if study else np.full(n, ONE_STUDY, dtype=object)
    s_codes, s_labels = pd.factorize(studies)
    p_codes, p_labels = pd.factorize(patients)
    g, combined = pd.factorize(s_codes.astype(np.int64) * max(len(p_labels), 1) + p_codes)
    m = len(combined)
    session = pd.to_numeric(data["session"], errors="coerce").to_numpy(dtype=float)
    alliance = _numbers(data["alliance"]).to_numpy(dtype=float)
    symptoms = _numbers(data["symptoms"]).to_numpy(dtype=float)
    row = pd.to_numeric(data["row"], errors="coerce").to_numpy(dtype=float) if "row" in data.columns \
        else np.full(n, np.nan)
    in_window = (session >= first) & (session <= last) & np.isfinite(alliance)
    n_early = np.bincount(g[in_window], minlength=m)
    with np.errstate(invalid="ignore", divide="ignore"):
        early_mean = np.bincount(g[in_window], weights=alliance[in_window], minlength=m) / n_early
    scored = pd.DataFrame({"g": g, "session": session, "symptoms": symptoms})
    scored = scored[np.isfinite(symptoms)].sort_values(["g", "session"], kind="stable")
    intake = np.full(m, np.nan)
    firsts = scored.drop_duplicates("g", keep="first")
    intake[firsts["g"].to_numpy()] = firsts["symptoms"].to_numpy()
    post_value = np.full(m, np.nan)
    conflicting: dict[int, np.ndarray] = {}
    if post is None:
        lasts = scored[scored["session"] > last].drop_duplicates("g", keep="last")
        post_value[lasts["g"].to_numpy()] = lasts["symptoms"].to_numpy()
    else:
        values = _numbers(data[post]).to_numpy(dtype=float)
        if symptoms_range is not None:
            lo, hi = symptoms_range
            values = np.where((values < lo) | (values > hi), np.nan, values)
        known = pd.DataFrame({"g": g, "value": values}).dropna().drop_duplicates()
        counts = np.bincount(known["g"].to_numpy(), minlength=m)
        single = known[counts[known["g"].to_numpy()] == 1]
        post_value[single["g"].to_numpy()] = single["value"].to_numpy()
        several = known[counts[known["g"].to_numpy()] > 1]
        conflicting = {int(k): v["value"].to_numpy() for k, v in several.groupby("g", sort=False)}
    first_row = pd.Series(row).groupby(g).min().reindex(range(m)).to_numpy()
    # one row per patient, vectorised
    per = pd.DataFrame({"study": s_labels[combined // max(len(p_labels), 1)],
                        "patient": p_labels[combined % max(len(p_labels), 1)], "row": first_row,
                        "early_alliance": early_mean, "n_early": n_early.astype(int), "intake": intake,
                        "post": post_value})
    reasons = pd.Series("", index=per.index, dtype=object)

    def add(mask: pd.Series, text: pd.Series | str) -> None:
        mask = mask.to_numpy(dtype=bool)
        old = reasons[mask]
        new = text[mask] if isinstance(text, pd.Series) else text
        reasons[mask] = np.where(old.eq(""), new, old + "; " + new)

    add(per["early_alliance"].isna(), _("no alliance score in sessions {first}–{last}").format(first=first, last=last))
    add(per["intake"].isna(), _("no symptom score (no intake)"))
    if post is None:
        add(per["post"].isna(), _("no symptom score after session {last}").format(last=last))
    else:
        differ = pd.Series(per.index.isin(list(conflicting)), index=per.index)
        if differ.any():
            texts = pd.Series("", index=per.index, dtype=object)
            texts[differ] = [_("the post-treatment scores in its rows differ ({values})").format(
                values=", ".join(f"{v:g}" for v in conflicting[key][:4])) for key in per.index[differ]]
            add(differ, texts)
        add(per["post"].isna() & ~differ, _("no post-treatment score"))
    keep = reasons.eq("").to_numpy()
    table = per[keep].reset_index(drop=True)
    table["row"] = [_spreadsheet_row(r) for r in table["row"]]
    table = table[["study", "patient", "early_alliance", "n_early", "intake", "post", "row"]]
    left = per[~keep].reset_index(drop=True)
    excluded = [{"row": _spreadsheet_row(r), "patient": p, "study": st, "reason": why}
                for r, p, st, why in zip(left["row"], left["patient"], left["study"], reasons[~keep])]
    excluded.sort(key=lambda e: (e["row"] is None, e["row"] if e["row"] is not None else 0, e["patient"]))
    return table, excluded


def stage1_study(patients: pd.DataFrame, label: Any = None) -> dict[str, Any]:
    """Stage 1 in one study: OLS of z-scored post on z-scored early alliance and intake, and Pearson's r.

    With ``z(x) = (x - mean x) / sd x`` (sd with n − 1) over the study's patients:
    ``post_z = b0 + b1 alliance_z + b2 intake_z + e``, ``b = (X'X)^-1 X'y``, classical
    ``se(b1) = sqrt(s2 [(X'X)^-1]_11)`` with ``s2 = RSS / (n - 3)``; t with n − 3 df; and
    ``r = cor(early alliance, post)``, ``fisher_z = atanh(r)``, ``fisher_z_se = 1/sqrt(n - 3)``.
    Raises :class:`InputError` (one sentence) when the study cannot give them.

    >>> d = pd.DataFrame({"early_alliance": [4.0, 5.5, 6.0, 3.5, 5.0, 6.5],
    ...                   "intake": [70.0, 60, 80, 75, 65, 72], "post": [60.0, 40, 55, 70, 45, 41]})
    >>> s = stage1_study(d)  # R: coef(summary(lm(scale(post) ~ scale(early) + scale(intake))))[2, 1:2]
    >>> round(s["estimate"], 4), round(s["se"], 4), round(s["r"], 4)
    (-0.7929, 0.0706, -0.788)
    """
    from scipy import stats

    name = _("Study '{study}'").format(study=label) if label is not None and label != ONE_STUDY else _("The data")
    n = len(patients)
    if n < MIN_PATIENTS:
        raise InputError(_("{study} has {n} patients with an early alliance, an intake and a post-treatment score; "
                           "at least {min} are needed.").format(study=name, n=n, min=MIN_PATIENTS))
    z = {}
    for col, what in (("post", _("the post-treatment score")), ("early_alliance", _("the early alliance")),
                      ("intake", _("the intake score"))):
        x = patients[col].to_numpy(dtype=float)
        sd = float(np.std(x, ddof=1))
        if not (np.isfinite(sd) and sd > 0):
            raise InputError(_("{study}: {what} is the same for every patient, so it cannot be standardised.").format(
                study=name, what=what))
        z[col] = (x - x.mean()) / sd
    X = np.column_stack([np.ones(n), z["early_alliance"], z["intake"]])
    if np.linalg.matrix_rank(X) < 3:
        raise InputError(_("{study}: the early alliance and the intake score carry the same information (perfectly "
                           "correlated), so their effects cannot be separated.").format(study=name))
    xtx_inv = np.linalg.inv(X.T @ X)
    beta = xtx_inv @ X.T @ z["post"]
    resid = z["post"] - X @ beta
    df = n - 3
    s2 = float(resid @ resid) / df
    se = math.sqrt(s2 * xtx_inv[1, 1])
    estimate = float(beta[1])
    t = estimate / se if se > 0 else math.copysign(math.inf, estimate) if estimate else 0.0
    crit = float(stats.t.ppf(0.975, df))
    r = float(np.corrcoef(patients["early_alliance"].to_numpy(float), patients["post"].to_numpy(float))[0, 1])
    return {"n_patients": int(n), "estimate": estimate, "se": se, "t": t, "df": int(df),
            "p": float(2 * stats.t.sf(abs(t), df)) if se > 0 else 0.0,
            "ci_low": estimate - crit * se, "ci_high": estimate + crit * se, "r": r,
            "fisher_z": float(np.arctanh(r)) if abs(r) < 1 else math.copysign(math.inf, r),
            "fisher_z_se": 1.0 / math.sqrt(df), "intake_estimate": float(beta[2]),
            "intake_se": math.sqrt(s2 * xtx_inv[2, 2])}


@dataclass(frozen=True)
class AllianceOutcomeResult:
    """Result of :func:`alliance_outcome`: the patients (``patients``), the ones left out
    (``excluded``), stage 1 per study (``stage1``: study → :func:`stage1_study`), the studies left out
    with their reasons, and stage 2 (``pooled`` on the coefficients, ``pooled_z`` on Fisher's z; None
    with fewer than two studies)."""

    early: tuple[int, int]
    outcome: str
    post_column: str | None
    patients: pd.DataFrame = field(compare=False, repr=False)
    excluded: list[dict[str, Any]] = field(compare=False, repr=False)
    stage1: dict[str, dict[str, Any]] = field(compare=False)
    excluded_studies: dict[str, str] = field(compare=False)
    pooled: PoolResult | None = field(compare=False, default=None)
    pooled_z: PoolResult | None = field(compare=False, default=None)
    method: str = "reml"
    knapp_hartung: bool = False

    @property
    def n_patients(self) -> int:
        """Patients in the stage-1 models (studies left out do not count)."""
        return int(sum(s["n_patients"] for s in self.stage1.values()))

    def outcome_definition(self) -> str:
        """Where the outcome came from, in the current language."""
        return _(OUTCOME_DEFINITIONS[self.outcome]).format(column=self.post_column, last=self.early[1])

    def pooled_r(self) -> dict[str, Any] | None:
        """Fisher's z pooled and back-transformed: ``{r, ci_low, ci_high, pi_low, pi_high, tau2, i2, p, k}``
        (``tau2`` on the z scale)."""
        z = self.pooled_z
        if z is None:
            return None
        return {"r": math.tanh(z.estimate), "ci_low": math.tanh(z.ci_low), "ci_high": math.tanh(z.ci_high),
                "pi_low": math.tanh(z.pi_low), "pi_high": math.tanh(z.pi_high), "tau2": z.tau2, "i2": z.i2,
                "p": z.p, "k": z.k, "z": z.estimate, "z_se": z.se}

    def stage1_table(self) -> pd.DataFrame:
        """One row per study: ``study, n_patients, estimate, se, t, df, p, ci_low, ci_high, r``."""
        columns = ["study", "n_patients", "estimate", "se", "t", "df", "p", "ci_low", "ci_high", "r"]
        return pd.DataFrame([{"study": label, **{c: s[c] for c in columns[1:]}} for label, s in self.stage1.items()],
                            columns=columns)

    def to_dict(self) -> dict[str, Any]:
        """The contract's keys: ``early_sessions, outcome, n_patients, excluded_rows, stage1.<study>:
        {n_patients, estimate, se, r}, pooled`` (the ``pool`` keys, or None for one study), ``pooled_r:
        {r, ci_low, ci_high, tau2, i2}``; plus ``outcome_column, outcome_definition, excluded_studies,
        method, knapp_hartung, pooled_fisher_z`` and per study ``t, df, p, ci_low, ci_high, fisher_z,
        fisher_z_se``."""
        stage1 = {label: {k: (_json_number(v) if isinstance(v, float) else v) for k, v in s.items()}
                  for label, s in self.stage1.items()}
        pooled_r = self.pooled_r()
        return {
            "early_sessions": list(self.early), "outcome": self.outcome, "outcome_column": self.post_column,
            "outcome_definition": self.outcome_definition(), "n_patients": self.n_patients,
            "excluded_rows": [{"row": e["row"], "reason": _("patient {patient}: {reason}").format(
                patient=e["patient"], reason=e["reason"])} for e in self.excluded],
            "excluded_studies": [{"study": k, "reason": v} for k, v in self.excluded_studies.items()],
            "method": self.method, "knapp_hartung": bool(self.knapp_hartung), "stage1": stage1,
            "pooled": self.pooled.to_dict() if self.pooled is not None else None,
            "pooled_r": {k: _json_number(v) if isinstance(v, float) else v for k, v in pooled_r.items()}
            if pooled_r else None,
            "pooled_fisher_z": self.pooled_z.to_dict() if self.pooled_z is not None else None,
        }


def alliance_outcome(data: pd.DataFrame, early: Sequence[int] | str = DEFAULT_EARLY, post: str | None = None,
                     study: str | None = None, method: str = "reml", knapp_hartung: bool = False,
                     symptoms_range: tuple[float, float] | None = None,
                     post_label: str | None = None) -> AllianceOutcomeResult:
    """Early alliance → post-treatment outcome, per study and pooled (see the module's docstring).

    A study that cannot be fitted (fewer than 4 patients with all three scores, a constant score) is
    left out with its reason; with two or more studies left, stage 2 pools the coefficients and
    Fisher's z with :func:`core.stats.meta.pool_effects` (``method``, ``knapp_hartung``). ``post_label``:
    the post-treatment column's name as the user knows it (the file's header), for the report.
    """
    early = parse_window(early)
    if study is not None and study not in data.columns:
        raise InputError(_("The data have no column '{column}'.").format(column=study))
    patients, excluded = patient_outcomes(data, early, post, study, symptoms_range)
    if patients.empty:
        why = excluded[0]["reason"] if excluded else _("there are no patients")
        raise InputError(_("No patient has an early alliance score (sessions {first}–{last}), an intake and a "
                           "post-treatment score; for example: {why}.").format(first=early[0], last=early[1], why=why))
    stage1, skipped = {}, {}
    for label in sorted_study_labels(patients["study"].unique()):
        try:
            stage1[str(label)] = stage1_study(patients[patients["study"] == label], label)
        except InputError as err:
            skipped[str(label)] = str(err)
    if not stage1:
        raise InputError(next(iter(skipped.values())))
    pooled = pooled_z = None
    if len(stage1) >= 2:
        labels = list(stage1)
        pooled = pool_effects([stage1[s]["estimate"] for s in labels], [stage1[s]["se"] for s in labels], labels,
                              method=method, knapp_hartung=knapp_hartung)
        finite = [s for s in labels if math.isfinite(stage1[s]["fisher_z"])]
        if len(finite) >= 2:
            pooled_z = pool_effects([stage1[s]["fisher_z"] for s in finite], [stage1[s]["fisher_z_se"] for s in finite],
                                    finite, method=method, knapp_hartung=knapp_hartung)
    return AllianceOutcomeResult(early=early, outcome=OUTCOME_POST if post else OUTCOME_LAST,
                                 post_column=(post_label or post) if post else None,
                                 patients=patients, excluded=excluded, stage1=stage1, excluded_studies=skipped,
                                 pooled=pooled, pooled_z=pooled_z, method=str(method).lower(),
                                 knapp_hartung=bool(knapp_hartung))
