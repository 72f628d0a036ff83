"""How well the early-warning signal predicted what it should: checked against two outcomes apart.

Lambert's signals are validated against deterioration and treatment failure (Lambert et al.,
2002; Lambert, Whipple & Kleinstäuber, 2018), not against a mix of both: "poor outcome =
deteriorated or not improved" covers nearly half of a clinic's patients, so its predictive value
looks high whatever the flag does. Here each outcome is counted on its own, at the patient's last
session, by the Jacobson–Truax reliable change (RC) from the intake (Jacobson & Truax, 1991):

- **reliable deterioration**: worse than the intake by at least RC;
- **no reliable improvement**: not better than the intake by at least RC (deteriorated or unchanged).

For each outcome and k = 4 and 6: among the patients followed beyond session k (so that the
outcome lies after the flag), *flagged* = not on track at some session up to k. Sensitivity =
flagged with the outcome / with the outcome; specificity = not flagged without it / without it;
positive predictive value = with the outcome / flagged; negative predictive value = without it /
not flagged; each with its counts. Also the **median session of the first flag** among the
patients with the outcome who were flagged, and the **patient-level false-alarm rate**: the share
of patients who ended reliably improved (or recovered) who were flagged not on track at some
session.

**No patient judges themselves.** With the data set's own expected course: 5-fold
cross-validation by patient (patients split by a hash of their ID, the same on any machine; each
fifth flagged by the expected course fitted on the other four). When the sessions have dates, also
a calendar split: fitted on the sessions of the first half of the calendar, checked on the
patients who started in the second half. With an outside norm no split is needed: the norm never
saw these patients. Both rules (:data:`core.clinical.signal_bounds.METHODS`) are checked side by
side on the same folds.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace

import pandas as pd

from core.clinical.signal import (
    SignalModel,
    SignalSettings,
    courses,
    fit_table,
    rule_label,
    status_table,
    with_bounds,
)
from core.clinical.signal_bounds import METHODS
from core.i18n import _, number

VALIDATION_FOLDS = 5
BY_SESSIONS = (4, 6)
OUTCOMES = ("deterioration", "no_reliable_improvement")


def _fold(patient_id: str, folds: int) -> int:
    return int(hashlib.sha1(str(patient_id).encode("utf-8")).hexdigest()[:8], 16) % folds


def cross_validated_statuses(data: pd.DataFrame, settings: SignalSettings = SignalSettings(), *,
                             folds: int = VALIDATION_FOLDS, patient: str = "patient",
                             rules=METHODS) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Every session's status under each rule, from an expected course fitted *without* that
    patient: patients are split into ``folds`` groups by a hash of their ID (the same split on any
    machine); each group is flagged by the model fitted on the other groups. Returns the statuses
    per rule (:func:`core.clinical.signal.status_table` rows) and the methods the folds used."""
    table = courses(data, settings.symptoms, settings.intake, patient)
    ids = table["patient"].astype(str)
    fold = ids.map(lambda p: _fold(p, folds)).to_numpy()
    parts: dict[str, list] = {r: [] for r in rules}
    methods = []
    for k in range(folds):
        held = fold == k
        if not held.any():
            continue
        model = fit_table(table.loc[~held], settings, rules=rules)
        methods.append(model.method)
        for r in rules:
            rs = _with_rule(settings, r)
            parts[r].append(status_table(table.loc[held], model, rs))
    out = {r: pd.concat(p, ignore_index=True).sort_values(["patient", "course_session"], kind="stable")
           .reset_index(drop=True) if p else status_table(table.iloc[:0], SignalModel("reliable_change", None), settings)
           for r, p in parts.items()}
    return out, methods


def _with_rule(settings: SignalSettings, rule: str) -> SignalSettings:
    return replace(settings, rule=rule)


def _share(k: int, n: int) -> dict:
    return {"value": k / n if n else None, "n": int(k), "of": int(n)}


def outcome_figures(statuses: pd.DataFrame, settings: SignalSettings, by_sessions=BY_SESSIONS,
                    horizon: int | None = None) -> dict:
    """The validation's figures from each session's status (module docstring): per outcome the
    sensitivity, specificity, PPV and NPV by each session in ``by_sessions`` (with counts) and the
    median session of the first flag; the patient-level false-alarm rate (over the whole course,
    and over the first ``horizon`` sessions)."""
    rc = settings.reliable_change
    sign = settings.sign
    scored = statuses.loc[statuses["observed"].notna()]
    last = scored.groupby("patient").agg(last_session=("course_session", "max"), last=("observed", "last"),
                                         intake=("intake", "first"), n=("observed", "size"))
    last = last.loc[last["intake"].notna() & (last["n"] >= 2)]
    worse = sign * (last["last"] - last["intake"])
    outcome = {"deterioration": worse >= rc, "no_reliable_improvement": -worse < rc}
    improved = -worse >= rc
    red = statuses.loc[statuses["status"].eq("not_on_track")]
    first_red = red.groupby("patient")["course_session"].min().reindex(last.index)
    judged = statuses.loc[statuses["status"].ne("unknown")].groupby("patient")["course_session"].min().reindex(last.index)
    out: dict = {"n_patients": int(len(last)), "outcomes": {}}
    for name, has in outcome.items():
        rows = []
        for k in by_sessions:
            eligible = (last["last_session"] > k) & judged.le(k)
            flagged = first_red.le(k) & eligible
            o = has & eligible
            tp, fp = int((flagged & o).sum()), int((flagged & ~o & eligible).sum())
            fn, tn = int((~flagged & o).sum()), int((~flagged & ~o & eligible).sum())
            rows.append({"session": int(k), "n_patients": int(eligible.sum()), "n_outcome": int(o.sum()),
                         "n_flagged": tp + fp, "sensitivity": _share(tp, tp + fn), "specificity": _share(tn, tn + fp),
                         "ppv": _share(tp, tp + fp), "npv": _share(tn, tn + fn)})
        when = first_red[has & first_red.notna()]
        out["outcomes"][name] = {"n_patients": int(len(last)), "n_outcome": int(has.sum()), "by_session": rows,
                                 "first_flag": {"median_session": float(when.median()) if len(when) else None,
                                                "n_flagged": int(len(when)), "of": int(has.sum())}}
    ever = first_red.notna()
    out["false_alarm"] = _share(int((ever & improved).sum()), int(improved.sum()))
    if horizon:
        out["false_alarm_within_horizon"] = {**_share(int((first_red.le(horizon) & improved).sum()),
                                                      int(improved.sum())), "horizon": int(horizon)}
    return out


def _dated_split(data: pd.DataFrame, settings: SignalSettings, patient: str):
    """(training rows, tested patients, midpoint) of the calendar split, or a reason there is none."""
    column = settings.date
    if not column or column not in data.columns:
        return _("The sessions have no dates, so there is no calendar split.")
    dates = pd.to_datetime(data[column], errors="coerce")
    if dates.notna().sum() < 2 or dates.min() == dates.max():
        return _("Too few dated sessions for a calendar split.")
    middle = dates.min() + (dates.max() - dates.min()) / 2
    start = dates.groupby(data[patient]).transform("min")
    train = data.loc[dates.le(middle)]
    tested = set(data.loc[start.gt(middle), patient])
    if not tested:
        return _("No patient started in the second half of the calendar.")
    return train, tested, middle


def validate_signal(data: pd.DataFrame, settings: SignalSettings = SignalSettings(), *,
                    model: SignalModel | None = None, folds: int = VALIDATION_FOLDS, patient: str = "patient",
                    by_sessions=BY_SESSIONS) -> dict:
    """How well the signal predicted deterioration and no reliable improvement in ``data`` (module
    docstring). ``model``: an outside norm (then every patient is judged by it, no split);
    otherwise cross-validated, and split by calendar when ``settings.date`` names a date column.
    Keys: ``method``, ``outcome``, ``flag``, ``rule``, ``outcomes``, ``false_alarm`` (the default
    rule's), ``methods.<rule>`` (both rules' figures), ``calendar``, ``sentences``."""
    rc = settings.reliable_change
    outside = model is not None and model.outside
    out = {"method": (_("Every patient is judged by the outside norm, which was fitted on other patients, so no "
                        "patient's own outcome informs the expected course that flags them.") if outside else
                      _("{folds}-fold cross-validation by patient: patients are split into {folds} groups by a hash "
                        "of their ID, and each group is flagged by the expected course fitted on the other groups, so a "
                        "patient's own outcome never informs the model that flags them.").format(folds=folds)),
           "outcome": _("Outcomes at the last session, from the intake (Jacobson & Truax, 1991; reliable change "
                        "{rc}): reliable deterioration = worse by at least the reliable change; no reliable "
                        "improvement = not better by at least the reliable change. False alarms: patients who ended "
                        "reliably improved (or recovered) but were flagged not on track at some session.").format(
               rc=number(rc, ".4g") if rc else "—"),
           "flag": _("Flagged by session k = not on track at some session up to k; only patients followed beyond "
                     "session k count (their outcome comes after the flag)."),
           "rule": settings.rule, "outcomes": {}, "methods": {}, "sentences": []}
    if not rc or not rc > 0:
        out["sentences"].append(_("The validation needs a reliable-change value to tell the outcomes apart."))
        return out
    if outside:
        table = courses(data, settings.symptoms, settings.intake, patient)
        per_rule = {r: status_table(table, with_bounds(model, _with_rule(settings, r)), _with_rule(settings, r))
                    for r in METHODS}
    else:
        per_rule, methods = cross_validated_statuses(data, settings, folds=folds, patient=patient)
        out["fold_methods"] = methods
    for r in METHODS:
        out["methods"][r] = outcome_figures(per_rule[r], settings, by_sessions, settings.horizon)
    mine = out["methods"][settings.rule]
    out["outcomes"], out["false_alarm"] = mine["outcomes"], mine["false_alarm"]
    out["n_patients"] = mine["n_patients"]
    out["calendar"] = calendar_validation(data, settings, patient=patient, by_sessions=by_sessions) \
        if not outside else None
    out["sentences"] = validation_sentences(out)
    return out


def calendar_validation(data: pd.DataFrame, settings: SignalSettings, *, patient: str = "patient",
                        by_sessions=BY_SESSIONS) -> dict:
    """Fitted on the sessions of the first half of the calendar, checked on the patients who
    started in the second half (``settings.date``); ``{"reason": …}`` when there are no dates."""
    split = _dated_split(data, settings, patient)
    if isinstance(split, str):
        return {"reason": split}
    train, tested, middle = split
    model = fit_table(courses(train, settings.symptoms, settings.intake, patient), settings, rules=METHODS)
    table = courses(data.loc[data[patient].isin(tested)], settings.symptoms, settings.intake, patient)
    out = {"split_date": middle.date().isoformat(), "n_tested": len(tested), "model": model.method, "methods": {}}
    for r in METHODS:
        rs = _with_rule(settings, r)
        out["methods"][r] = outcome_figures(status_table(table, model, rs), settings, by_sessions, settings.horizon)
    out["method"] = _("Calendar split: the expected course fitted on the sessions up to {date}, checked on the {n} "
                      "patients who started after it.").format(date=out["split_date"], n=len(tested))
    return out


def _pct(share: dict) -> str:
    return "—" if share["value"] is None else number(share["value"], ".0%")


def validation_sentences(validation: dict) -> list[str]:
    """The validation in plain words: per outcome, the default rule's sensitivity by sessions 4
    and 6, predictive values with counts and first flag; the false alarms; the rules compared."""
    names = {"deterioration": _("Reliable deterioration"), "no_reliable_improvement": _("No reliable improvement")}
    out = []
    for name, fig in validation.get("outcomes", {}).items():
        parts = []
        for row in fig["by_session"]:
            sens, ppv, npv = row["sensitivity"], row["ppv"], row["npv"]
            parts.append(_("by session {k}, {caught} of {with_outcome} flagged (sensitivity {sens}); of {flagged} "
                           "flagged, {hit} had it (PPV {ppv}); of {unflagged} not flagged, {clear} did not (NPV "
                           "{npv})").format(k=row["session"], caught=sens["n"], with_outcome=sens["of"], sens=_pct(sens),
                                            flagged=ppv["of"], hit=ppv["n"], ppv=_pct(ppv), unflagged=npv["of"],
                                            clear=npv["n"], npv=_pct(npv)))
        first = fig["first_flag"]
        when = (_("first flag at session {median:g} (median of {n} flagged of {of})").format(
            median=first["median_session"], n=first["n_flagged"], of=first["of"])
            if first["median_session"] is not None else _("none flagged"))
        out.append(_("{outcome} ({n} of {total} patients): {parts}; {first}.").format(
            outcome=names[name], n=fig["n_outcome"], total=fig["n_patients"], parts="; ".join(parts), first=when))
    fa = validation.get("false_alarm")
    if fa:
        out.append(_("False alarms: {n} of {of} patients who ended reliably improved or recovered ({pct}) were flagged "
                     "not on track at some session.").format(n=fa["n"], of=fa["of"], pct=_pct(fa)))
    compared = []
    for r, fig in validation.get("methods", {}).items():
        det = fig["outcomes"]["deterioration"]["by_session"]
        six = next((row for row in det if row["session"] == 6), det[-1] if det else None)
        if six is None:
            continue
        compared.append(_("{rule}: deterioration caught by session {k} {sens}, false alarms {fa}").format(
            rule=rule_label(r), k=six["session"], sens=_pct(six["sensitivity"]), fa=_pct(fig["false_alarm"])))
    if len(compared) > 1:
        out.append(_("The two rules on these patients — {compared}.").format(compared="; ".join(compared)))
    return out


def validation_table(validation: dict, rule: str | None = None) -> pd.DataFrame:
    """The validation for people: one row per outcome and session k, every share written with its
    counts ("11 of 16 (69%)"). ``rule``: whose figures (default: the validation's rule)."""
    with_percent, without = _("{k} of {n} ({percent:.0f}%)"), _("{k} of {n}")

    def share(s):
        return with_percent.format(k=s["n"], n=s["of"], percent=100 * s["value"]) if s["of"] else \
            without.format(k=s["n"], n=s["of"])

    names = {"deterioration": _("reliable deterioration"), "no_reliable_improvement": _("no reliable improvement")}
    figures = validation.get("methods", {}).get(rule or validation.get("rule"), {}).get("outcomes") \
        or validation.get("outcomes", {})
    rows = []
    for name, fig in figures.items():
        for r in fig["by_session"]:
            rows.append({_("outcome"): names.get(name, name), _("by session"): r["session"],
                         _("patients followed beyond it"): r["n_patients"],
                         _("with the outcome"): r["n_outcome"],
                         _("sensitivity"): share(r["sensitivity"]), _("specificity"): share(r["specificity"]),
                         _("positive predictive value"): share(r["ppv"]),
                         _("negative predictive value"): share(r["npv"])})
    return pd.DataFrame(rows)


def rules_table(validation: dict) -> pd.DataFrame:
    """The rules side by side: per rule, deterioration caught by sessions 4 and 6, no reliable
    improvement caught by session 6, the false alarms and the median session of the first flag."""
    with_percent = _("{k} of {n} ({percent:.0f}%)")

    def share(s):
        return with_percent.format(k=s["n"], n=s["of"], percent=100 * s["value"]) if s["of"] else "—"

    rows = []
    for r, fig in validation.get("methods", {}).items():
        det, noimp = fig["outcomes"]["deterioration"], fig["outcomes"]["no_reliable_improvement"]
        by = {row["session"]: row for row in det["by_session"]}
        by_noimp = {row["session"]: row for row in noimp["by_session"]}
        first = det["first_flag"]["median_session"]
        rows.append({
            _("rule"): rule_label(r) + (" ✓" if r == validation.get("rule") else ""),
            _("deterioration flagged by session 4"): share(by[4]["sensitivity"]) if 4 in by else "—",
            _("deterioration flagged by session 6"): share(by[6]["sensitivity"]) if 6 in by else "—",
            _("no reliable improvement flagged by session 6"):
                share(by_noimp[6]["sensitivity"]) if 6 in by_noimp else "—",
            _("false alarms (ended improved, ever flagged)"): share(fig["false_alarm"]),
            _("first flag of deteriorating patients (median session)"): "—" if first is None else number(first, "g"),
        })
    return pd.DataFrame(rows)
