"""Plotly figures that pages and reports share (no streamlit here)."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from core.stats.meta import PoolResult


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
        text=studies["label"],
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
    labels = list(studies["label"]) + ["Pooled (random effects)", "Prediction interval"]
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
        text = list(frame.index) if col == 1 else None
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
        traces.append(go.Scatter(x=g["session"], y=g["mean"], mode="lines+markers", name=str(t), legendgroup=str(t),
                                 line=dict(color=color), customdata=np.column_stack([g["n"], g["low"], g["high"]]),
                                 hovertemplate=f"{t}<br>session %{{x}}: mean %{{y:.2f}}<br>"
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
        error_y=err, text=re["patient"],
        hovertemplate="patient %{text}<br>random intercept %{y:.3f}<extra></extra>"))
    fig.add_hline(y=0, line=dict(color="grey", width=1))
    fig.update_layout(height=360, xaxis_title="Patients, ranked", yaxis_title="Random intercept (BLUP)",
                      xaxis=dict(showticklabels=False), margin=dict(t=40, b=40),
                      title=dict(text="Patient random intercepts" + (" with 95% intervals" if has_se else ""),
                                 font=dict(size=14)))
    return fig


PATIENT_COLORS = {"alliance": "#1f77b4", "symptoms": "#d62728"}


def _axis(name: str, i: int) -> str:
    """Trace axis reference ('x', 'x2', …) of subplot row ``i`` (1-based)."""
    return name if i == 1 else f"{name}{i}"


def _domain(low: float, high: float) -> list[float]:
    """An axis domain within [0, 1] (Plotly rejects -1e-17 from float sums)."""
    return [max(0.0, round(low, 6)), min(1.0, round(high, 6))]


def patient_chart(sessions, measures, *, units: str = "points", expected=None, cutoff: float | None = None,
                  reliable_change: float | None = None, symptom_measure: str = "symptoms"):
    """One patient's measures on a shared session axis, one panel per measure (top to bottom).

    ``sessions``: that patient's rows from :func:`core.clinical.indices.patient_sessions` (and
    :func:`core.clinical.indices.flag_ruptures` for rupture markers), sorted by session. Per measure ``m``:

    * ``units="points"``: the scores as a line; the own mean (dashed) with a ±1 own-SD band; each
      session's deviation from the own mean as a bar starting at the mean; the clinic's expected
      trajectory from ``expected[m]`` (a frame with ``expected``, ``low``, ``high`` per session, e.g.
      :func:`core.clinical.indices.expected_line`; dotted, with its band); for ``symptom_measure`` the
      clinical ``cutoff`` (line) and the band of ± ``reliable_change`` around session 1.
    * ``units="own SD units"``: each session's deviation in the patient's own SDs as bars, with
      reference lines at ±1.

    Rupture flags (``rupture``/``repaired`` columns) are marked on the alliance panel.
    The layout is written directly (no ``make_subplots``/``add_hline``), which keeps a page rerun
    cheap: the figure is rebuilt every time a therapist switches patients.
    """
    expected = expected or {}
    n = len(measures)
    gap = 0.08
    height_each = (1 - gap * (n - 1)) / n
    x = sessions["session"].to_numpy()
    xs = list(x)
    traces, shapes, annotations = [], [], []
    layout = {}
    for i, m in enumerate(measures, start=1):
        xa, ya = _axis("x", i), _axis("y", i)
        top = 1 - (i - 1) * (height_each + gap)
        domain = _domain(top - height_each, top)
        layout[_axis("yaxis", i)] = dict(domain=domain, anchor=xa)
        layout[_axis("xaxis", i)] = dict(anchor=ya, dtick=1, showticklabels=i == n,
                                         **({"matches": "x"} if i > 1 else {}),
                                         **({"title": dict(text="Session")} if i == n else {}))
        annotations.append(dict(text=m.capitalize(), x=0.5, y=domain[1], xref="paper", yref="paper", xanchor="center",
                                yanchor="bottom", showarrow=False, font=dict(size=16)))
        color = PATIENT_COLORS.get(m, "#7f7f7f")
        first = i == 1
        mean, sd = float(sessions[f"{m}_mean"].iloc[0]), float(sessions[f"{m}_sd"].iloc[0])
        dev_pts, dev_sd = sessions[f"{m}_within"].to_numpy(), sessions[f"{m}_within_sd"].to_numpy()
        custom = np.column_stack([dev_pts, dev_sd, sessions[m].to_numpy()])
        hover = (f"Session %{{x}}<br>{m}: %{{customdata[2]:.2f}}<br>"
                 "from own mean: %{customdata[0]:+.2f} points (%{customdata[1]:+.2f} own SD)<extra></extra>")
        if units == "points":
            if np.isfinite(sd):
                traces.append(go.Scatter(x=xs + xs[::-1], y=[mean + sd] * len(xs) + [mean - sd] * len(xs),
                                         fill="toself", fillcolor="rgba(120,120,120,0.15)", line=dict(width=0),
                                         mode="lines", name="own mean ± 1 own SD", hoverinfo="skip",
                                         showlegend=first, xaxis=xa, yaxis=ya))
            traces.append(go.Bar(x=x, y=dev_pts, base=mean, name="deviation from own mean", marker_color=color,
                                 opacity=0.35, customdata=custom, hovertemplate=hover, showlegend=first,
                                 xaxis=xa, yaxis=ya))
            traces.append(go.Scatter(x=x, y=[mean] * len(xs), mode="lines", line=dict(color="grey", dash="dash"),
                                     name="own mean", hoverinfo="skip", showlegend=first, xaxis=xa, yaxis=ya))
            traces.append(go.Scatter(x=x, y=sessions[m].to_numpy(), mode="lines+markers", line=dict(color=color),
                                     name=m, customdata=custom, hovertemplate=hover, xaxis=xa, yaxis=ya))
            line = expected.get(m)
            if line is not None:
                traces.append(go.Scatter(x=xs + xs[::-1], y=list(line["high"]) + list(line["low"])[::-1],
                                         fill="toself", fillcolor="rgba(44,160,44,0.12)", line=dict(width=0),
                                         mode="lines", hoverinfo="skip", name="clinic expected (95% CI)",
                                         showlegend=first, xaxis=xa, yaxis=ya))
                traces.append(go.Scatter(x=x, y=line["expected"].to_numpy(), mode="lines",
                                         line=dict(color="#2ca02c", dash="dot"), name="clinic expected",
                                         hovertemplate="clinic expected %{y:.2f}<extra></extra>",
                                         showlegend=first, xaxis=xa, yaxis=ya))
            if m == symptom_measure and cutoff is not None:
                shapes.append(dict(type="line", xref=f"{xa} domain", yref=ya, x0=0, x1=1, y0=cutoff, y1=cutoff,
                                   line=dict(color="black", width=1)))
                annotations.append(dict(text="clinical cut-off", xref=f"{xa} domain", yref=ya, x=0, y=cutoff,
                                        xanchor="left", yanchor="bottom", showarrow=False))
            if m == symptom_measure and reliable_change:
                base = float(sessions[m].iloc[0])
                shapes.append(dict(type="rect", xref=f"{xa} domain", yref=ya, x0=0, x1=1,
                                   y0=base - reliable_change, y1=base + reliable_change,
                                   fillcolor="orange", opacity=0.08, line=dict(width=0), layer="above"))
                annotations.append(dict(text="no reliable change from session 1", xref=f"{xa} domain", yref=ya,
                                        x=0, y=base + reliable_change, xanchor="left", yanchor="top",
                                        showarrow=False))  # at the band's top: the cut-off label sits low
        else:
            traces.append(go.Bar(x=x, y=dev_sd, marker_color=color, name=f"{m} deviation (own SD)",
                                 customdata=custom, hovertemplate=hover, xaxis=xa, yaxis=ya))
            for level in (-1, 1):
                shapes.append(dict(type="line", xref=f"{xa} domain", yref=ya, x0=0, x1=1, y0=level, y1=level,
                                   line=dict(color="grey", dash="dot", width=1)))
        if m == "alliance" and "rupture" in sessions:
            r = sessions[sessions["rupture"].astype(bool)]
            if len(r):
                label = r["repaired"].map({True: "repaired next session", False: "not repaired next session"})
                label = label.astype(object).where(label.notna(), "no next session yet")
                yv = r[m] if units == "points" else r[f"{m}_within_sd"]
                traces.append(go.Scatter(x=r["session"].to_numpy(), y=yv.to_numpy(), mode="markers", name="rupture",
                                         marker=dict(symbol="x", size=14, color="black"), text=list(label),
                                         hovertemplate="Rupture in session %{x}: %{text}<extra></extra>",
                                         xaxis=xa, yaxis=ya))
    fig = go.Figure(data=traces)
    fig.update_layout(height=330 * n, hovermode="x unified", barmode="overlay", shapes=shapes,
                      annotations=annotations, legend=dict(orientation="h", y=-0.08), margin=dict(t=40, b=40),
                      **layout)
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
