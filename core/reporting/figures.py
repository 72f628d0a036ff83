"""Plotly figures that pages and reports share (no streamlit here)."""
from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go

from core.stats.meta import PoolResult


def _text(value) -> str:
    """A data-derived label (study, therapist, patient) as Plotly shows it: the few HTML tags Plotly
    reads in labels and hover text (``<a href>``, ``<b>``, ``<br>`` …) shown as text."""
    return html.escape(str(value), quote=False)


def forest_plot(result: PoolResult, title: str = "", effect_label: str = "Effect",
                null_value: float = 0.0) -> go.Figure:
    """Forest plot: one row per study (square sized by weight, 95% CI), the pooled estimate as a
    diamond (its 95% CI) and the 95% prediction interval as a line under it.

    Studies run top to bottom in the order given; hovering shows estimate, CI, SE and weight.
    """
    studies = result.studies.reset_index(drop=True)
    k = len(studies)
    y_study = np.arange(k, 0, -1) + 1.5  # studies above the pooled rows
    est = studies["estimate"].to_numpy(float)
    se = studies["se"].to_numpy(float)
    low, high = est - 1.96 * se, est + 1.96 * se
    weight = studies["weight"].to_numpy(float)
    size = 8 + 22 * np.sqrt(weight / weight.max())
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=est, y=y_study, mode="markers", name="studies",
        marker=dict(symbol="square", size=size, color="#34495e"),
        error_x=dict(type="data", symmetric=False, array=high - est, arrayminus=est - low,
                     color="#34495e", thickness=1.5, width=0),
        customdata=np.column_stack([low, high, se, weight]),
        text=[_text(v) for v in studies["label"]],
        hovertemplate="%{text}<br>estimate %{x:.3f} (95% CI %{customdata[0]:.3f} to %{customdata[1]:.3f})"
                      "<br>SE %{customdata[2]:.3f}, weight %{customdata[3]:.1f}%<extra></extra>",
    ))
    y_pool = 0.9
    fig.add_trace(go.Scatter(
        x=[result.ci_low, result.estimate, result.ci_high, result.estimate, result.ci_low],
        y=[y_pool, y_pool + 0.35, y_pool, y_pool - 0.35, y_pool], fill="toself", mode="lines",
        fillcolor="#c0392b", line=dict(color="#c0392b"), name="pooled (95% CI)",
        hovertemplate=f"pooled {result.estimate:.3f} (95% CI {result.ci_low:.3f} to {result.ci_high:.3f})<extra></extra>",
    ))
    if result.pi_low is not None and np.isfinite(result.pi_low):
        fig.add_trace(go.Scatter(
            x=[result.pi_low, result.pi_high], y=[0, 0], mode="lines+markers", name="95% prediction interval",
            line=dict(color="#c0392b", dash="dot"), marker=dict(symbol="line-ns-open", size=12),
            hovertemplate=f"95% prediction interval {result.pi_low:.3f} to {result.pi_high:.3f}<extra></extra>",
        ))
    fig.add_vline(x=null_value, line=dict(color="grey", width=1))
    labels = [_text(v) for v in studies["label"]] + ["Pooled (random effects)", "Prediction interval"]
    fig.update_yaxes(tickvals=list(y_study) + [y_pool, 0], ticktext=labels, showgrid=False,
                     range=[-0.8, k + 2.2])
    method = result.method.upper() + (" + Knapp–Hartung" if result.knapp_hartung else "")
    fig.update_layout(
        title=title or None, xaxis_title=effect_label, height=160 + 28 * k, showlegend=False,
        margin=dict(l=10, r=10, t=50 if title else 20, b=40),
        annotations=[dict(xref="paper", yref="paper", x=1, y=-0.12, showarrow=False, xanchor="right",
                          text=f"τ² = {result.tau2:.4f}, I² = {result.i2:.1f}%, {method}",
                          font=dict(size=11, color="grey"))],
    )
    return fig


def between_within_scatter(data, predictor: str = "alliance", outcome: str = "symptoms"):
    """Two panels that make the disaggregation visible: patient means of predictor vs outcome
    (between patients) beside session deviations from each patient's own means (within patients),
    each with its least-squares line."""
    from plotly.subplots import make_subplots

    means = data.groupby("patient")[[predictor, outcome]].mean()
    dev = data[[predictor, outcome]] - data.groupby("patient")[[predictor, outcome]].transform("mean")
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "Between patients: patient means", "Within patients: deviations from own means"))
    for col, frame, hover in ((1, means, "patient %{text}"), (2, dev, "session deviation")):
        x, y = frame[predictor].to_numpy(float), frame[outcome].to_numpy(float)
        ok = np.isfinite(x) & np.isfinite(y)
        text = [_text(v) for v in frame.index] if col == 1 else None
        fig.add_trace(go.Scattergl(x=x[ok], y=y[ok], mode="markers", marker=dict(size=5, opacity=0.45),
                                   text=np.asarray(text)[ok] if text is not None else None,
                                   hovertemplate=hover + f"<br>{predictor} %{{x:.2f}}<br>{outcome} %{{y:.2f}}<extra></extra>",
                                   showlegend=False), row=1, col=col)
        if ok.sum() > 2 and np.ptp(x[ok]) > 0:
            slope, icept = np.polyfit(x[ok], y[ok], 1)
            xs = np.array([x[ok].min(), x[ok].max()])
            fig.add_trace(go.Scatter(x=xs, y=icept + slope * xs, mode="lines", line=dict(color="#c0392b"),
                                     name=f"slope {slope:.2f}", hovertemplate=f"OLS slope {slope:.3f}<extra></extra>",
                                     showlegend=False), row=1, col=col)
            axis = "" if col == 1 else str(col)
            fig.add_annotation(text=f"OLS slope {slope:.2f}", xref=f"x{axis} domain", yref=f"y{axis} domain",
                               x=0.98, y=0.98, showarrow=False, xanchor="right")
    fig.update_xaxes(title_text=f"{predictor} (patient mean)", row=1, col=1)
    fig.update_xaxes(title_text=f"{predictor} (deviation from own mean)", row=1, col=2)
    fig.update_yaxes(title_text=f"{outcome} (patient mean)", row=1, col=1)
    fig.update_yaxes(title_text=f"{outcome} (deviation)", row=1, col=2)
    fig.update_layout(height=420, margin=dict(t=50, b=40))
    return fig


def spaghetti(data, outcome: str = "symptoms", mean_line=None, max_patients: int = 300):
    """Each patient's trajectory as a thin line, with the fitted mean line (``mean_line``: a frame
    with ``session`` and ``expected``, e.g. the time model's fixed effects). Shows at most
    ``max_patients`` patients (the first in ID order) so that large files stay readable."""
    patients = sorted(data["patient"].unique())
    shown = set(patients[:max_patients])
    fig = go.Figure()
    sub = data[data["patient"].isin(shown)].sort_values(["patient", "session"])
    # one trace with gaps between patients draws thousands of lines fast
    xs, ys = [], []
    for _, g in sub.groupby("patient", sort=False):
        xs += list(g["session"]) + [None]
        ys += list(g[outcome]) + [None]
    fig.add_trace(go.Scattergl(x=xs, y=ys, mode="lines", line=dict(color="rgba(100,100,100,0.25)", width=1),
                               name="patients", hoverinfo="skip"))
    if mean_line is not None:
        fig.add_trace(go.Scatter(x=mean_line["session"], y=mean_line["expected"], mode="lines",
                                 line=dict(color="#c0392b", width=3), name="fitted mean",
                                 hovertemplate="fitted mean %{y:.2f}<extra></extra>"))
    note = f" (first {max_patients} of {len(patients)} patients)" if len(patients) > max_patients else ""
    fig.update_layout(height=380, xaxis_title="Session", yaxis_title=outcome, showlegend=True, xaxis=dict(dtick=1),
                      title=dict(text=f"Per-patient trajectories{note}", font=dict(size=14)),
                      margin=dict(t=50, b=40))
    return fig


def therapist_trajectory_figure(trajectories, measure: str, max_therapists: int = 12):
    """Each therapist's mean ``measure`` per session with its 95% CI band (``trajectories`` from
    :func:`core.clinical.indices.therapist_trajectories`). Draws at most ``max_therapists`` therapists — those
    with the most observations, ties by name — because more lines cannot be told apart; the title
    says when some are left out. Two traces per therapist (band, line)."""
    import plotly.express as px

    size = trajectories.groupby("therapist")["n"].sum()
    ranked = sorted(size.index, key=lambda t: (-size[t], str(t)))
    shown = sorted(ranked[:max_therapists], key=str)
    palette = px.colors.qualitative.Plotly
    traces = []
    for i, t in enumerate(shown):
        g = trajectories[trajectories["therapist"] == t].sort_values("session")
        color = palette[i % len(palette)]
        ok = g.dropna(subset=["low", "high"])
        traces.append(go.Scatter(x=list(ok["session"]) + list(ok["session"])[::-1],
                                 y=list(ok["high"]) + list(ok["low"])[::-1], fill="toself", fillcolor=color,
                                 opacity=0.12, line=dict(width=0), hoverinfo="skip", mode="lines",
                                 showlegend=False, legendgroup=str(t)))
        traces.append(go.Scatter(x=g["session"], y=g["mean"], mode="lines+markers", name=_text(t), legendgroup=str(t),
                                 line=dict(color=color), customdata=np.column_stack([g["n"], g["low"], g["high"]]),
                                 hovertemplate=f"{_text(t)}<br>session %{{x}}: mean %{{y:.2f}}<br>"
                                               "95% CI %{customdata[1]:.2f} to %{customdata[2]:.2f}<br>"
                                               "N %{customdata[0]}<extra></extra>"))
    note = (f" — the {len(shown)} therapists with the most sessions of {len(ranked)}; choose therapists to compare others"
            if len(ranked) > len(shown) else "")
    fig = go.Figure(data=traces)
    fig.update_layout(height=420, xaxis_title="Session", yaxis_title=measure, hovermode="closest",
                      title=dict(text=f"Mean {measure} per therapist (95% CI){note}", font=dict(size=13)),
                      margin=dict(t=50, b=40))
    return fig


def residual_diagnostics(model):
    """Residuals vs fitted values and a normal QQ plot of the residuals (REML fit)."""
    from plotly.subplots import make_subplots
    from scipy import stats

    resid, fitted = np.asarray(model.residuals), np.asarray(model.fitted)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Residuals vs fitted", "Normal QQ plot of residuals"))
    fig.add_trace(go.Scattergl(x=fitted, y=resid, mode="markers", marker=dict(size=4, opacity=0.4),
                               hovertemplate="fitted %{x:.2f}<br>residual %{y:.2f}<extra></extra>",
                               showlegend=False), row=1, col=1)
    fig.add_hline(y=0, line=dict(color="grey", width=1), row=1, col=1)
    order = np.sort(resid)
    n = len(order)
    theory = stats.norm.ppf((np.arange(1, n + 1) - 0.5) / n)
    fig.add_trace(go.Scattergl(x=theory, y=order, mode="markers", marker=dict(size=4, opacity=0.4),
                               hovertemplate="normal quantile %{x:.2f}<br>residual %{y:.2f}<extra></extra>",
                               showlegend=False), row=1, col=2)
    if n > 1:
        q1, q3 = np.percentile(order, [25, 75])
        t1, t3 = stats.norm.ppf([0.25, 0.75])
        slope = (q3 - q1) / (t3 - t1)
        fig.add_trace(go.Scatter(x=theory[[0, -1]], y=q1 + slope * (theory[[0, -1]] - t1), mode="lines",
                                 line=dict(color="#c0392b"), showlegend=False, hoverinfo="skip"), row=1, col=2)
    fig.update_xaxes(title_text="Fitted value", row=1, col=1)
    fig.update_yaxes(title_text="Residual", row=1, col=1)
    fig.update_xaxes(title_text="Normal quantile", row=1, col=2)
    fig.update_yaxes(title_text="Residual quantile", row=1, col=2)
    fig.update_layout(height=380, margin=dict(t=50, b=40))
    return fig


def caterpillar(model, max_patients: int = 400):
    """Patients' random intercepts (BLUPs) sorted, with 95% intervals (±1.96 conditional SD) where
    the model gives them. With many patients every k-th patient is shown (evenly over the ranks)."""
    re = model.random_effects.sort_values("intercept").reset_index(drop=True)
    if len(re) > max_patients:
        re = re.iloc[np.linspace(0, len(re) - 1, max_patients).round().astype(int)]
    has_se = "intercept_se" in re
    err = dict(type="data", array=1.96 * re["intercept_se"], color="rgba(52,73,94,0.5)", thickness=1,
               width=0) if has_se else None
    fig = go.Figure(go.Scattergl(
        x=np.arange(len(re)), y=re["intercept"], mode="markers", marker=dict(size=5, color="#34495e"),
        error_y=err, text=[_text(v) for v in re["patient"]],
        hovertemplate="patient %{text}<br>random intercept %{y:.3f}<extra></extra>"))
    fig.add_hline(y=0, line=dict(color="grey", width=1))
    fig.update_layout(height=360, xaxis_title="Patients, ranked", yaxis_title="Random intercept (BLUP)",
                      xaxis=dict(showticklabels=False), margin=dict(t=40, b=40),
                      title=dict(text="Patient random intercepts" + (" with 95% intervals" if has_se else ""),
                                 font=dict(size=14)))
    return fig


PATIENT_COLORS = {"alliance": "#1565c0", "symptoms": "#424242"}
#: Early-warning statuses: label, colour (each ≥ 4.5:1 against white, WCAG AA), marker symbol.
STATUS_STYLE = {
    "not_on_track": ("not on track", "#c62828", "triangle-up"),
    "at_risk": ("at risk", "#a15c00", "diamond"),
    "on_track": ("on track", "#2e7d32", "circle"),
    "unknown": ("no status", "#616161", "circle-open"),
}
EXPECTED_COLOR = "#1565c0"


def _axis(name: str, i: int) -> str:
    """Trace axis reference ('x', 'x2', …) of subplot row ``i`` (1-based)."""
    return name if i == 1 else f"{name}{i}"


def _domain(low: float, high: float) -> list[float]:
    """An axis domain within [0, 1] (Plotly rejects -1e-17 from float sums)."""
    return [max(0.0, round(low, 6)), min(1.0, round(high, 6))]


def patient_chart(sessions, measures, *, signal=None, cutoff: float | None = None, labels: dict | None = None,
                  band_label: str = "usual range: 8 in 10 patients who started at this level",
                  symptom_measure: str = "symptoms", status_text: bool = True):
    """One patient's course: the symptom measure with its early-warning signal on top, alliance with
    its rupture flags below, on a shared session axis.

    ``sessions``: that patient's rows from :func:`core.clinical.indices.patient_sessions` and
    :func:`core.clinical.indices.flag_ruptures_so_far`, sorted by session. ``signal``: that patient's
    rows of :func:`core.clinical.signal.session_signal`. ``labels``: per measure a panel title and
    the axis title with the unit, e.g. ``("Symptoms (higher = worse)", "OQ-45.2 total")``.

    * Symptoms: the patient's expected course from where they started (dashed) with the band
      ``lower``–``upper`` (``band_label``), the at-risk bound (dotted), the scores as a line, and each
      session as a marker whose colour and shape say its status (not on track ▲ red, at risk ◆ amber,
      on track ● green, no status ○ grey), written beside the marker where it changes and at the
      latest session; the clinical ``cutoff`` as a line.
    * Alliance: the scores, the patient's mean so far (dashed) and the rupture limit so far
      (dotted); ruptures as ✕ with "rupture" written beside them.

    The layout is written directly (no ``make_subplots``), which keeps a rerun cheap: the figure is
    rebuilt every time a therapist switches patients.
    """
    labels = labels or {}
    order = [m for m in (symptom_measure, "alliance") if m in measures] + \
        [m for m in measures if m not in (symptom_measure, "alliance")]
    n = len(order)
    gap = 0.14
    height_each = (1 - gap * (n - 1)) / n
    x = sessions["session"].to_numpy()
    traces, shapes, annotations = [], [], []
    layout = {}
    for i, m in enumerate(order, start=1):
        xa, ya = _axis("x", i), _axis("y", i)
        top = 1 - (i - 1) * (height_each + gap)
        domain = _domain(top - height_each, top)
        title, unit = labels.get(m, (m.capitalize(), "score"))
        layout[_axis("yaxis", i)] = dict(domain=domain, anchor=xa, title=dict(text=unit))
        annotations.append(dict(text=f"<b>{title}</b>", x=0, y=domain[1], xref="paper", yref="paper", xanchor="left",
                                yanchor="bottom", showarrow=False, font=dict(size=14, color="#212121")))
        layout[_axis("xaxis", i)] = dict(anchor=ya, showticklabels=True, **({"dtick": 1} if len(x) <= 30 else {}),
                                         **({"matches": "x"} if i > 1 else {}),
                                         **({"title": dict(text="Session")} if i == n else {}))
        values = sessions[m].to_numpy(float)
        if m == symptom_measure:
            sig = None
            if signal is not None and len(signal):
                sig = signal.set_index("session").reindex(sessions["session"])
            if sig is not None and sig["expected"].notna().any():
                ok = sig["expected"].notna().to_numpy()
                xs = list(x[ok])
                lo, hi = sig["lower"].to_numpy()[ok], sig["upper"].to_numpy()[ok]
                traces.append(go.Scatter(x=xs + xs[::-1], y=list(hi) + list(lo[::-1]), fill="toself",
                                         fillcolor="rgba(21,101,192,0.10)", line=dict(width=0), mode="lines",
                                         name=band_label, hoverinfo="skip", xaxis=xa, yaxis=ya))
                # the expected course starts where the patient started
                start = sig["observed"].to_numpy()[0] if not ok[0] else None
                ex_x = ([x[0]] if start is not None and np.isfinite(start) else []) + xs
                ex_y = ([start] if start is not None and np.isfinite(start) else []) + list(sig["expected"].to_numpy()[ok])
                traces.append(go.Scatter(x=ex_x, y=ex_y, mode="lines", line=dict(color=EXPECTED_COLOR, dash="dash", width=2),
                                         name="expected course from this starting point",
                                         hovertemplate="expected %{y:.1f}<extra></extra>", xaxis=xa, yaxis=ya))
                traces.append(go.Scatter(x=xs, y=sig["at_risk_bound"].to_numpy()[ok], mode="lines",
                                         line=dict(color=STATUS_STYLE["at_risk"][1], dash="dot", width=1.5),
                                         name="at-risk bound", hovertemplate="at-risk bound %{y:.1f}<extra></extra>",
                                         xaxis=xa, yaxis=ya))
            traces.append(go.Scatter(x=x, y=values, mode="lines", line=dict(color=PATIENT_COLORS["symptoms"], width=2),
                                     name=title, hoverinfo="skip", showlegend=False, xaxis=xa, yaxis=ya))
            status = sig["status"].fillna("unknown").to_numpy() if sig is not None else np.full(len(x), "unknown")
            reason = sig["reason"].fillna("").to_numpy() if sig is not None else np.full(len(x), "")
            # the status is written where it changes and at the latest session (the legend, the
            # marker shapes and the hover say it for every session), so labels do not pile up
            changes = np.r_[True, status[1:] != status[:-1]]
            changes[-1] = True
            for key, (text, color, symbol) in STATUS_STYLE.items():
                sel = status == key
                if not sel.any():
                    continue
                show_text = status_text
                words = ["start" if (key == "unknown" and j == 0) else (text if changes[j] else "")
                         for j in np.flatnonzero(sel)]
                traces.append(go.Scatter(
                    x=x[sel], y=values[sel], mode="markers+text" if show_text else "markers",
                    marker=dict(symbol=symbol, size=12, color=color, line=dict(color=color, width=2)),
                    text=words if show_text else None, textposition="top center",
                    textfont=dict(color=color, size=11), name=text, customdata=np.asarray(reason[sel], dtype=object),
                    hovertemplate=f"Session %{{x}}: {m} %{{y:.1f}}<br><b>{text}</b><br>%{{customdata}}<extra></extra>",
                    xaxis=xa, yaxis=ya))
            if cutoff is not None:  # a trace, not a shape, so that the axis range includes it
                traces.append(go.Scatter(x=[x.min(), x.max()], y=[cutoff, cutoff], mode="lines",
                                         line=dict(color="#212121", width=1), name=f"clinical cut-off ({cutoff:.3g})",
                                         hovertemplate=f"clinical cut-off {cutoff:.3g}<extra></extra>", xaxis=xa, yaxis=ya))
        else:
            color = PATIENT_COLORS.get(m, "#424242")
            traces.append(go.Scatter(x=x, y=values, mode="lines+markers", line=dict(color=color, width=2),
                                     marker=dict(size=7), name=title,
                                     hovertemplate=f"Session %{{x}}: {m} %{{y:.2f}}<extra></extra>", xaxis=xa, yaxis=ya))
            mean_col = f"{m}_mean_so_far"
            if mean_col in sessions:
                traces.append(go.Scatter(x=x, y=sessions[mean_col].to_numpy(), mode="lines",
                                         line=dict(color="#616161", dash="dash", width=1.5), name="own mean so far",
                                         hovertemplate="own mean so far %{y:.2f}<extra></extra>", xaxis=xa, yaxis=ya))
            if m == "alliance" and "rupture_limit" in sessions:
                traces.append(go.Scatter(x=x, y=sessions["rupture_limit"].to_numpy(), mode="lines",
                                         line=dict(color="#616161", dash="dot", width=1), name="rupture limit so far",
                                         hovertemplate="rupture limit %{y:.2f}<extra></extra>", xaxis=xa, yaxis=ya))
            if m == "alliance" and "rupture" in sessions:
                r = sessions[sessions["rupture"].astype(bool)]
                if len(r):
                    label = r["repaired"].map({True: "repaired in the next session", False: "not repaired in the next session"})
                    label = label.astype(object).where(label.notna(), "no next session yet")
                    traces.append(go.Scatter(
                        x=r["session"].to_numpy(), y=r[m].to_numpy(), mode="markers+text", name="rupture",
                        marker=dict(symbol="x", size=13, color=STATUS_STYLE["not_on_track"][1]),
                        text=["rupture"] * len(r), textposition="middle right",
                        textfont=dict(color=STATUS_STYLE["not_on_track"][1], size=11), customdata=list(label),
                        hovertemplate="Rupture in session %{x}: %{customdata}<extra></extra>", xaxis=xa, yaxis=ya))
    fig = go.Figure(data=traces)
    fig.update_layout(height=300 * n + 90, hovermode="closest", shapes=shapes, annotations=annotations,
                      legend=dict(orientation="h", y=-0.12 if n > 1 else -0.25, x=0, font=dict(size=12)),
                      margin=dict(t=30, b=40, l=60, r=20), plot_bgcolor="white",
                      **layout)
    fig.update_xaxes(gridcolor="#e0e0e0", zeroline=False)
    fig.update_yaxes(gridcolor="#e0e0e0", zeroline=False)
    return fig


def small_multiples(sessions, patients, measure: str, *, cutoff: float | None = None, columns: int = 6,
                    panel_height: int = 140):
    """One small panel per patient (in the order of ``patients``): ``measure`` by session, all
    panels on the same axes ranges, the clinical ``cutoff`` as a dotted line where given.

    Pass a page of patients (the overview shows 24): Plotly's facets become unreadable, and
    fail, beyond about a hundred panels. The grid is laid out directly rather than through
    Plotly Express facets, which cost about 0.3 s per redraw on the benchmark machine.
    """
    patients = list(patients)
    n = len(patients)
    rows = max(1, -(-n // columns))
    hgap, vgap = 0.02, 0.04 if rows > 1 else 0.0
    width = (1 - hgap * (columns - 1)) / columns
    height = (1 - vgap * (rows - 1)) / rows
    by_patient = {p: g.sort_values("session") for p, g in sessions[sessions["patient"].isin(patients)].groupby("patient")}
    traces, annotations, shapes, layout = [], [], [], {}
    for k, p in enumerate(patients):
        i = k + 1
        r, c = divmod(k, columns)
        x0 = c * (width + hgap)
        top = 1 - r * (height + vgap)
        xa, ya = _axis("x", i), _axis("y", i)
        layout[_axis("xaxis", i)] = dict(domain=_domain(x0, x0 + width), anchor=ya,
                                         **({"matches": "x"} if i > 1 else {}), showticklabels=r == rows - 1)
        y_domain = _domain(top - height, top)
        layout[_axis("yaxis", i)] = dict(domain=y_domain, anchor=xa, **({"matches": "y"} if i > 1 else {}),
                                         showticklabels=c == 0)
        annotations.append(dict(text=str(p), x=x0 + width / 2, y=y_domain[1], xref="paper", yref="paper",
                                xanchor="center", yanchor="bottom", showarrow=False, font=dict(size=11)))
        g = by_patient.get(p)
        if g is not None:
            traces.append(go.Scatter(x=g["session"].to_numpy(), y=g[measure].to_numpy(), mode="lines+markers",
                                     name=str(p), line=dict(color="#636efa"), marker=dict(size=5),
                                     hovertemplate=f"{p}<br>session %{{x}}: %{{y:.2f}}<extra></extra>",
                                     xaxis=xa, yaxis=ya))
        if cutoff is not None:
            shapes.append(dict(type="line", xref=f"{xa} domain", yref=ya, x0=0, x1=1, y0=cutoff, y1=cutoff,
                               line=dict(color="grey", width=1, dash="dot")))
    fig = go.Figure(data=traces)
    fig.update_layout(height=panel_height * rows + 60, showlegend=False, annotations=annotations, shapes=shapes,
                      margin=dict(t=30, b=10), **layout)
    return fig


# ---------------------------------------------------------------------------------------------
# RI-CLPM path diagram (issue 17)
# ---------------------------------------------------------------------------------------------

def _stars(p) -> str:
    if p is None or not np.isfinite(p):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""


def _signed(x: float, digits: int = 2) -> str:
    """``x`` with a typographic minus: ``digits`` decimals, more for small values (−0.0031, not −0.00)."""
    if x != 0 and abs(x) < 0.5 * 10 ** -digits:
        return f"{x:.2g}".replace("-", "−")
    if x != 0 and abs(x) < 0.095 and digits == 2:
        return f"{x:.3f}".replace("-", "−")
    return f"{x:.{digits}f}".replace("-", "−")


def riclpm_path_diagram(result, standardized: bool = False, title: str | None = None) -> go.Figure:
    """Path diagram of a fitted RI-CLPM (:class:`core.stats.riclpm.RiclpmResult`).

    Top row: alliance within each session; bottom row: symptoms. Arrows: autoregressive effects
    along each row, cross-lagged effects on the diagonals (alliance → next symptoms in red,
    symptoms → next alliance in blue), labelled with the estimate and its significance (* p < .05,
    ** p < .01, *** p < .001); grey where p ≥ .05. ``standardized`` labels std.all (per session
    pair) instead of the unstandardised estimate. The random intercepts span the rows above and
    below with their loadings (1) on every session and their variances; their covariance (and
    correlation) is the curve on the right. Hovering a label shows estimate, SE, p and std.all.
    """
    sessions = list(result.sessions)
    T = len(sessions)
    w, h = 0.36, 0.2  # half width and half height of a session's box
    y_a, y_s, y_ria, y_ris = 2.0, 0.0, 3.3, -1.3
    dark, grey, muted = "#1f3b73", "#a8a8a8", "#6b6b6b"
    colours = {"alliance_to_symptoms": "#c0392b", "symptoms_to_alliance": "#1f6fb2"}
    compact = T >= 6  # boxes "A1", "S1" so that 6 to 12 sessions stay readable at 800 px
    size = 12 if T <= 5 else 11 if T <= 7 else 10
    shapes, notes = [], []
    hover_x, hover_y, hover_text = [], [], []

    def box(x0, x1, y, text, fill, half_h=h):
        shapes.append(dict(type="rect", x0=x0, x1=x1, y0=y - half_h, y1=y + half_h,
                           line=dict(color="#34495e", width=1.2), fillcolor=fill, layer="below"))
        notes.append(dict(x=(x0 + x1) / 2, y=y, text=text, showarrow=False, font=dict(size=size - 1, color="#1b1b1b")))

    def arrow(x0, y0, x1, y1, colour, width):
        notes.append(dict(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y", text="",
                          showarrow=True, arrowhead=2, arrowsize=1, arrowwidth=width, arrowcolor=colour))

    def label(x, y, text, colour, hover, anchor="center"):
        notes.append(dict(x=x, y=y, text=text, showarrow=False, xanchor=anchor,
                          font=dict(size=size, color=colour), bgcolor="rgba(255,255,255,0.85)", borderpad=1))
        hover_x.append(x)
        hover_y.append(y)
        hover_text.append(hover)

    ri = result.random_intercepts
    left, right = -w, T - 1 + w
    for t, s in enumerate(sessions):
        if compact:
            box(t - w, t + w, y_a, f"<b>A{s}</b>", "#eef3fb")
            box(t - w, t + w, y_s, f"<b>S{s}</b>", "#fbeeee")
        else:
            sub = f"<br><span style='font-size:{size - 2}px'>session {s}</span>"
            box(t - w, t + w, y_a, "Alliance" + sub, "#eef3fb")
            box(t - w, t + w, y_s, "Symptoms" + sub, "#fbeeee")
        shapes.append(dict(type="line", x0=t, y0=y_ria - 0.2, x1=t, y1=y_a + h, line=dict(color="#c8c8c8", width=1)))
        shapes.append(dict(type="line", x0=t, y0=y_ris + 0.2, x1=t, y1=y_s - h, line=dict(color="#c8c8c8", width=1)))
    for y, key, measure in ((y_ria, "alliance_variance", "alliance"), (y_ris, "symptoms_variance", "symptoms")):
        box(left, right, y, f"Random intercept, {measure} (each patient's usual level): variance "
                            f"{_signed(ri[key], 3)}{_stars(ri.get(key + '_p'))}", "#f4f4f4")

    entries = {}
    for key, entry in result.lagged.items():
        if isinstance(entry, list):
            entries[key] = entry
        else:
            common = {k: v for k, v in entry.items() if k not in ("std_all", "from_session")}
            entries[key] = [{**common, "std_all": std, "from_session": s}
                            for std, s in zip(entry["std_all"], entry["from_session"])]
    names = {"alliance_autoregressive": "alliance → next alliance",
             "symptoms_autoregressive": "symptoms → next symptoms",
             "alliance_to_symptoms": "alliance → next symptoms", "symptoms_to_alliance": "symptoms → next alliance"}
    for key, items in entries.items():
        for e in items:
            t = sessions.index(int(e["from_session"]))
            sig = e["p"] is not None and e["p"] < 0.05
            value = e["std_all"] if standardized else e["estimate"]
            text = _signed(value) + _stars(e["p"])
            width = 2.4 if sig else 1.2
            hover = (f"{names[key]}, session {e['from_session']} → {sessions[t + 1]}<br>"
                     f"estimate {e['estimate']:.3f} (SE {e['se']:.3f}), p = {e['p']:.3g}<br>std.all {e['std_all']:.3f}")
            if key in ("alliance_autoregressive", "symptoms_autoregressive"):
                y, y_label = (y_a, y_a + h + 0.14) if key == "alliance_autoregressive" else (y_s, y_s - h - 0.14)
                arrow(t + w, y, t + 1 - w, y, dark if sig else grey, width)
                label(t + 0.5, y_label, text, dark if sig else muted, hover)
            else:
                y0, y1 = (y_a - h, y_s + h) if key == "alliance_to_symptoms" else (y_s + h, y_a - h)
                x0, x1 = t + w * 0.5, t + 1 - w * 0.5
                colour = colours[key] if sig else grey
                arrow(x0, y0, x1, y1, colour, width)
                f = 0.3
                label(x0 + f * (x1 - x0), y0 + f * (y1 - y0), text, colour if sig else muted, hover)
    # random-intercept covariance: the curve on the right, with the correlation
    p_cov = ri.get("covariance_p")
    corr = ri.get("correlation")
    cov_sig = p_cov is not None and p_cov < 0.05
    cov_colour = dark if cov_sig else grey
    shapes.append(dict(type="path", path=f"M {right},{y_ria} Q {right + 1.1},{(y_ria + y_ris) / 2} {right},{y_ris}",
                       line=dict(color=cov_colour, width=2 if cov_sig else 1.2)))
    for y_end in (y_ria, y_ris):  # arrowheads at both ends, along the curve's tangent
        notes.append(dict(x=right, y=y_end, ax=right + 0.22, ay=y_end + 0.2 * ((y_ria + y_ris) / 2 - y_end),
                          xref="x", yref="y", axref="x",
                          ayref="y", text="", showarrow=True, arrowhead=2, arrowwidth=2 if cov_sig else 1.2,
                          arrowcolor=cov_colour))
    cov_text = (f"covariance<br>{_signed(ri['covariance'], 3)}{_stars(p_cov)}"
                + (f"<br>r = {_signed(corr)}" if corr is not None else ""))
    label(right + 0.62, (y_ria + y_ris) / 2, cov_text, dark if cov_sig else muted,
          (f"random-intercept covariance {ri['covariance']:.4f} (SE {ri.get('covariance_se', float('nan')):.4f}), "
           f"p = {p_cov:.3g}") if p_cov is not None else "random-intercept covariance", anchor="left")
    fig = go.Figure(go.Scatter(x=hover_x, y=hover_y, mode="markers", marker=dict(size=18, opacity=0),
                               hovertext=hover_text, hoverinfo="text", showlegend=False))
    what = "standardized (std.all)" if standardized else "unstandardized"
    equal = "" if result.free_lags else "Lagged effects equal over sessions" + (
        " (std.all differs by session pair). " if standardized else ". ")
    legend = "A3 = alliance at session 3, S3 = symptoms at session 3." if compact else ""
    fig.update_layout(
        shapes=shapes, annotations=notes + [dict(
            xref="paper", yref="paper", x=0, y=-0.02, xanchor="left", yanchor="top", showarrow=False, align="left",
            text=f"{what.capitalize()} estimates; * p < .05, ** p < .01, *** p < .001; grey: not significant."
                 f"<br>{equal}{legend}",
            font=dict(size=11, color="#555"))],
        title=dict(text=title or f"RI-CLPM, sessions {sessions[0]}–{sessions[-1]}: {what} lagged effects",
                   font=dict(size=14)),
        xaxis=dict(visible=False, range=[left - 0.15, right + 1.75], fixedrange=True),
        yaxis=dict(visible=False, range=[y_ris - 0.3, y_ria + 0.3], fixedrange=True),
        height=490, margin=dict(l=5, r=5, t=45, b=50), plot_bgcolor="white", hovermode="closest",
    )
    return fig


def power_curve(result, target: float = 0.8, title: str = "") -> go.Figure:
    """Power by number of patients (:class:`core.stats.power.PowerAnalysis`): the estimate with
    its Clopper–Pearson 95% interval (a band and error bars), a dashed line at ``target`` and the
    observed number of patients marked. Hovering shows power, interval, simulations and failed fits."""
    table = result.table().dropna(subset=["power"])
    n = table["n_patients"].to_numpy(int)
    power = table["power"].to_numpy(float)
    low, high = table["ci_low"].to_numpy(float), table["ci_high"].to_numpy(float)
    fig = go.Figure()
    if len(n) > 1:
        fig.add_trace(go.Scatter(x=np.concatenate([n, n[::-1]]), y=np.concatenate([high, low[::-1]]),
                                 fill="toself", fillcolor="rgba(41, 128, 185, 0.15)", line=dict(width=0),
                                 hoverinfo="skip", name="95% interval"))
    fig.add_trace(go.Scatter(
        x=n, y=power, mode="lines+markers", name="power", line=dict(color="#2980b9", width=2),
        marker=dict(size=9),
        error_y=dict(type="data", symmetric=False, array=high - power, arrayminus=power - low,
                     color="#2980b9", thickness=1.2, width=4),
        customdata=np.column_stack([low, high, table["nsim"].to_numpy(int), table["n_failed"].to_numpy(int)]),
        hovertemplate="%{x} patients: power %{y:.1%} (95% CI %{customdata[0]:.1%} to %{customdata[1]:.1%})"
                      "<br>%{customdata[2]} simulations, %{customdata[3]} failed fits<extra></extra>",
    ))
    fig.add_hline(y=target, line=dict(color="#c0392b", dash="dash", width=1),
                  annotation_text=f"{target:.0%} power", annotation_position="bottom right")
    fig.add_vline(x=result.n_patients_observed, line=dict(color="grey", dash="dot", width=1),
                  annotation_text=f"observed: {result.n_patients_observed}", annotation_position="top left")
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", title="Power")
    fig.update_xaxes(title="Patients", tickvals=list(n), rangemode="tozero")
    fig.update_layout(title=title or None, height=380, showlegend=False,
                      margin=dict(l=10, r=10, t=50 if title else 20, b=40))
    return fig
