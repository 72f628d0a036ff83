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
