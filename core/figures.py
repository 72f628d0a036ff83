"""Plotly figures that pages and reports share (no streamlit here)."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from core.meta import PoolResult


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
