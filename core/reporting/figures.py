"""Plotly figures that pages and reports share (no streamlit here).

Every figure sets its own background, text and mark colours from :mod:`core.reporting.palette`
(WCAG AA contrast, checked by ``tests/test_palette.py``), so that neither Streamlit's theme nor
Plotly's template chooses a colour; statuses are told apart by colour, marker shape and words.
"""
from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go

from core.i18n import DECIMAL_COMMA, N_, _, get_language, number
from core.intake.mapping import role_name
from core.reporting import palette as pal
from core.reporting.formatting import decimals_for, format_number
from core.stats.meta import PoolResult


def _text(value) -> str:
    """A data-derived label (study, therapist, patient) as Plotly shows it: the few HTML tags Plotly
    reads in labels and hover text (``<a href>``, ``<b>``, ``<br>`` …) shown as text."""
    return html.escape(str(value), quote=False)


def _wrap(text: str, width: int = 34) -> str:
    """A long axis title on two lines (at the space or comma nearest the middle), so that a
    vertical title fits a panel of 250 px."""
    text = str(text)
    if len(text) <= width or "<br>" in text:
        return text
    middle = len(text) // 2
    cuts = [i for i, ch in enumerate(text) if ch == " "]
    if not cuts:
        return text
    cut = min(cuts, key=lambda i: abs(i - middle))
    return text[:cut] + "<br>" + text[cut + 1:]


def _separators() -> dict:
    """Tick labels and hover numbers with the language's separators (Plotly's ``separators``:
    decimal then thousands; Spanish writes 0,5 and 1.000). English keeps Plotly's default."""
    return {"separators": ",."} if get_language() in DECIMAL_COMMA else {}


def _local_numbers(fig: go.Figure) -> go.Figure:
    """``fig`` with the language's separators (:func:`_separators`)."""
    separators = _separators()
    if separators:
        fig.update_layout(**separators)
    return fig


def _page_style() -> dict:
    """The layout's part of :func:`_style` (background, text, colourway, separators) as a plain dict."""
    return dict(paper_bgcolor=pal.BACKGROUND, plot_bgcolor=pal.BACKGROUND, font=dict(color=pal.TEXT, size=13),
                colorway=list(pal.CATEGORICAL), legend=dict(font=dict(color=pal.TEXT)),
                title=dict(font=dict(color=pal.TEXT)), **_separators())


def _axis_style() -> dict:
    """Every axis's part of :func:`_style` as a plain dict."""
    return dict(gridcolor=pal.GRID, zeroline=False, linecolor=pal.REFERENCE, showline=True,
                tickfont=dict(color=pal.MUTED_TEXT), title=dict(font=dict(color=pal.TEXT)))


def _merged(base: dict, extra: dict) -> dict:
    """``base`` updated by ``extra`` as Plotly's ``update`` does: nested dicts merged, ``extra`` wins."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _styled(layout: dict) -> dict:
    """A layout dict with :func:`_style` merged in, every ``xaxis…``/``yaxis…`` key included: the same
    figure as ``_style(go.Figure(layout=layout))``, but validated once rather than updated per axis
    (on the overview's 24 panels, 0.28 s of the figure's 0.49 s went to ``_style``'s updates)."""
    out = _merged(layout, _page_style())
    for key in out:
        if key.startswith(("xaxis", "yaxis")):
            out[key] = _merged(out[key], _axis_style())
    return out


def _style(fig: go.Figure) -> go.Figure:
    """White background, dark text and tick labels, light grid lines, the accessible colourway.
    Called last: Plotly replaces an axis title's font when the title is set as text afterwards, and
    Streamlit's chart theme then draws it in its own grey (3.7:1)."""
    fig.update_layout(**_page_style())
    fig.update_xaxes(**_axis_style())
    fig.update_yaxes(**_axis_style())
    return fig


def _padded(low: float, high: float, share: float = 0.04) -> list[float]:
    """An axis range from ``low`` to ``high`` with a little room, so that markers at the ends show whole."""
    pad = (high - low) * share
    return [low - pad, high + pad]


def forest_plot(result: PoolResult, title: str = "", effect_label: str | None = None,
                null_value: float = 0.0, decimals: int = 2) -> go.Figure:
    """Forest plot as metafor draws it: one row per study (a square whose *area* is proportional
    to the study's weight, its 95% CI as a line), the pooled estimate as a diamond (its 95% CI)
    and the 95% prediction interval as a dotted line under it; on the right of every row its
    estimate [95% CI] and weight.

    Studies run top to bottom in the order given; hovering shows estimate, CI, SE and weight. The
    heterogeneity (τ², I²) and the method are written above the plot. ``effect_label``: the
    axis title (default "Effect" in the current language).
    """
    studies = result.studies.reset_index(drop=True)
    k = len(studies)
    y_study = np.arange(k, 0, -1) + 1.5  # studies above the pooled rows
    est = studies["estimate"].to_numpy(float)
    se = studies["se"].to_numpy(float)
    low, high = est - 1.96 * se, est + 1.96 * se
    weight = studies["weight"].to_numpy(float)
    size = np.maximum(6.0, 24.0 * np.sqrt(weight / weight.max()))  # area ∝ weight
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=est, y=y_study, mode="markers", name=_("studies"),
        marker=dict(symbol="square", size=size, color=pal.STUDY, opacity=1, line=dict(width=0)),
        error_x=dict(type="data", symmetric=False, array=high - est, arrayminus=est - low,
                     color=pal.STUDY, thickness=1.5, width=0),
        customdata=np.column_stack([low, high, se, weight]),
        text=[_text(v) for v in studies["label"]],
        hovertemplate=_("%{text}<br>estimate %{x:.3f} (95% CI %{customdata[0]:.3f} to %{customdata[1]:.3f})"
                        "<br>SE %{customdata[2]:.3f}, weight %{customdata[3]:.1f}%") + "<extra></extra>",
    ))
    y_pool = 0.9
    fig.add_trace(go.Scatter(
        x=[result.ci_low, result.estimate, result.ci_high, result.estimate, result.ci_low],
        y=[y_pool, y_pool + 0.35, y_pool, y_pool - 0.35, y_pool], fill="toself", mode="lines",
        fillcolor=pal.FIT, line=dict(color=pal.FIT), name=_("pooled (95% CI)"),
        hovertemplate=_("pooled {estimate:.3f} (95% CI {low:.3f} to {high:.3f})").format(
            estimate=result.estimate, low=result.ci_low, high=result.ci_high) + "<extra></extra>",
    ))
    has_pi = result.pi_low is not None and np.isfinite(result.pi_low)
    if has_pi:
        fig.add_trace(go.Scatter(
            x=[result.pi_low, result.pi_high], y=[0, 0], mode="lines+markers", name=_("95% prediction interval"),
            line=dict(color=pal.FIT, dash="dot"), marker=dict(symbol="line-ns-open", size=12, color=pal.FIT),
            hovertemplate=_("95% prediction interval {low:.3f} to {high:.3f}").format(
                low=result.pi_low, high=result.pi_high) + "<extra></extra>",
        ))
    fig.add_vline(x=null_value, line=dict(color=pal.REFERENCE, width=1))

    def num(x: float) -> str:
        return format_number(x, decimals)

    # the right-hand columns: estimate [95% CI] and weight, right-aligned in pixels beside the plot
    # "[low, high]"; a language with a decimal comma separates the two with a semicolon
    with_ci, interval = _("{estimate} [{low}, {high}]"), _("[{low}, {high}]")
    rows = [(y, with_ci.format(estimate=num(e), low=num(a), high=num(b)), number(w, ".1f") + "%")
            for y, e, a, b, w in zip(y_study, est, low, high, weight)]
    rows.append((y_pool, "<b>{}</b>".format(with_ci.format(estimate=num(result.estimate), low=num(result.ci_low),
                                                           high=num(result.ci_high))), "<b>100%</b>"))
    if has_pi:
        rows.append((0, interval.format(low=num(result.pi_low), high=num(result.pi_high)), ""))
    top = k + 2.35
    rows.append((top, "<b>{}</b>".format(_("Estimate [95% CI]")), "<b>{}</b>".format(_("Weight"))))
    notes = []
    for y, ci_text, weight_text in rows:
        notes.append(dict(xref="paper", yref="y", x=1, y=y, xanchor="right", xshift=175, text=ci_text,
                          showarrow=False, font=dict(size=12, color=pal.TEXT)))
        if weight_text:
            notes.append(dict(xref="paper", yref="y", x=1, y=y, xanchor="right", xshift=240, text=weight_text,
                              showarrow=False, font=dict(size=12, color=pal.TEXT)))
    method = result.method.upper() + (" + Knapp–Hartung" if result.knapp_hartung else "")
    # above the plot: below it, the axis title moves down when narrow screens tilt the tick labels
    notes.append(dict(xref="paper", yref="paper", x=0, y=1, xanchor="left", yanchor="bottom", yshift=6,
                      showarrow=False, align="left", font=dict(size=12, color=pal.MUTED_TEXT),
                      text=_("Heterogeneity: τ² = {tau2:.4f}, I² = {i2:.1f}% ({method}).").format(
                          tau2=float(result.tau2), i2=float(result.i2), method=method)))
    labels = [_text(v) for v in studies["label"]] + [_("Pooled (random effects)")] + \
        ([_("Prediction interval")] if has_pi else [])
    fig.update_yaxes(tickvals=list(y_study) + [y_pool] + ([0] if has_pi else []), ticktext=labels, showgrid=False,
                     range=[-0.8, k + 2.8], showline=False)
    fig.update_layout(
        title=title or None, xaxis_title=_("Effect") if effect_label is None else effect_label,
        height=200 + 30 * k, showlegend=False,
        margin=dict(l=10, r=250, t=80 if title else 40, b=60), annotations=notes,
    )
    _style(fig)
    fig.update_yaxes(tickfont=dict(color=pal.TEXT))
    return fig


def between_within_scatter(data, predictor: str = "alliance", outcome: str = "symptoms"):
    """Two panels that make the disaggregation visible: patient means of predictor vs outcome
    (between patients) beside session deviations from each patient's own means (within patients),
    each with its least-squares line."""
    from plotly.subplots import make_subplots

    means = data.groupby("patient")[[predictor, outcome]].mean()
    dev = data[[predictor, outcome]] - data.groupby("patient")[[predictor, outcome]].transform("mean")
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        _("Between patients: patient means"), _("Within patients: deviations from own means")))
    x_name, y_name = _text(role_name(predictor)), _text(role_name(outcome))
    for col, frame, hover in ((1, means, _("patient %{text}")), (2, dev, _("session deviation"))):
        x, y = frame[predictor].to_numpy(float), frame[outcome].to_numpy(float)
        ok = np.isfinite(x) & np.isfinite(y)
        text = [_text(v) for v in frame.index] if col == 1 else None
        fig.add_trace(go.Scattergl(x=x[ok], y=y[ok], mode="markers",
                                   marker=dict(size=5, opacity=pal.POINTS_OPACITY, color=pal.POINTS),
                                   text=np.asarray(text)[ok] if text is not None else None,
                                   hovertemplate=hover + f"<br>{x_name} %{{x:.2f}}<br>{y_name} %{{y:.2f}}<extra></extra>",
                                   showlegend=False), row=1, col=col)
        if ok.sum() > 2 and np.ptp(x[ok]) > 0:
            slope, icept = np.polyfit(x[ok], y[ok], 1)
            xs = np.array([x[ok].min(), x[ok].max()])
            fig.add_trace(go.Scatter(x=xs, y=icept + slope * xs, mode="lines", line=dict(color=pal.FIT, width=2.5),
                                     name=_("slope {slope:.2f}").format(slope=float(slope)),
                                     hovertemplate=_("OLS slope {slope:.3f}").format(slope=float(slope)) + "<extra></extra>",
                                     showlegend=False), row=1, col=col)
            axis = "" if col == 1 else str(col)
            fig.add_annotation(text=_("OLS slope {slope:.2f}").format(slope=float(slope)), xref=f"x{axis} domain", yref=f"y{axis} domain",
                               x=0.98, y=0.98, showarrow=False, xanchor="right", font=dict(color=pal.FIT))
    fig.update_xaxes(title_text=_("{measure} (patient mean)").format(measure=x_name), row=1, col=1)
    fig.update_xaxes(title_text=_("{measure} (deviation from own mean)").format(measure=x_name), row=1, col=2)
    fig.update_yaxes(title_text=_("{measure} (patient mean)").format(measure=y_name), row=1, col=1)
    fig.update_yaxes(title_text=_("{measure} (deviation)").format(measure=y_name), row=1, col=2)
    _style(fig)
    for ann in fig.layout.annotations:
        if ann.font.color is None:
            ann.font.color = pal.TEXT
    fig.update_layout(height=420, margin=dict(t=50, b=40))
    return fig


def spaghetti(data, outcome: str = "symptoms", mean_line=None, max_patients: int = 300, y_title: str | None = None):
    """Each patient's trajectory as a thin line, with the fitted mean line (``mean_line``: a frame
    with ``session`` and ``expected``, e.g. the time model's fixed effects). Shows at most
    ``max_patients`` patients (the first in ID order) so that large files stay readable. ``y_title``:
    the outcome with its scale (else its column name)."""
    patients = sorted(data["patient"].unique())
    shown = set(patients[:max_patients])
    fig = go.Figure()
    sub = data[data["patient"].isin(shown)].sort_values(["patient", "session"])
    # one trace with gaps between patients draws thousands of lines fast
    xs, ys = [], []
    for _patient, g in sub.groupby("patient", sort=False):
        xs += list(g["session"]) + [None]
        ys += list(g[outcome]) + [None]
    fig.add_trace(go.Scattergl(x=xs, y=ys, mode="lines", line=dict(color=pal.POINTS, width=1),
                               opacity=pal.POINTS_OPACITY, name=_("patients"), hoverinfo="skip"))
    if mean_line is not None:
        fig.add_trace(go.Scatter(x=mean_line["session"], y=mean_line["expected"], mode="lines",
                                 line=dict(color=pal.FIT, width=3), name=_("fitted mean"),
                                 hovertemplate=_("fitted mean %{y:.2f}") + "<extra></extra>"))
    title = (_("Per-patient trajectories (first {shown:,} of {n:,} patients)").format(shown=max_patients, n=len(patients))
             if len(patients) > max_patients else _("Per-patient trajectories"))
    fig.update_layout(height=380, xaxis_title=_("Session"), yaxis_title=_wrap(y_title or role_name(outcome)),
                      showlegend=True, xaxis=dict(dtick=1),
                      title=dict(text=title, font=dict(size=14)),
                      margin=dict(t=50, b=40))
    return _style(fig)


def _band_segments(x, low, high):
    """A band's outline as one ``fill="toself"`` trace: one closed shape per run of consecutive points
    with both bounds (separated by gaps), so that a session without a CI leaves a gap, not a bridge."""
    xs, ys = [], []
    run: list[int] = []
    ok = np.isfinite(low) & np.isfinite(high)
    for i in list(range(len(x))) + [None]:
        if i is not None and ok[i]:
            run.append(i)
            continue
        if run:
            if xs:
                xs.append(None)
                ys.append(None)
            xs += [x[j] for j in run] + [x[j] for j in reversed(run)]
            ys += [high[j] for j in run] + [low[j] for j in reversed(run)]
        run = []
    return xs, ys


def therapist_trajectory_figure(trajectories, measure: str, max_therapists: int = 12, *,
                                y_title: str | None = None, y_range: tuple[float, float] | None = None,
                                clip_range: tuple[float, float] | None = None):
    """Each therapist's mean ``measure`` per session with its 95% CI band (``trajectories`` from
    :func:`core.clinical.indices.therapist_trajectories`). Draws at most ``max_therapists`` therapists — those
    with the most observations, ties by name — because more lines cannot be told apart; the title
    says when some are left out. Two traces per therapist (band, line). ``y_title``: the axis title
    with the unit; ``y_range``: the scale's full range as the axis (else fitted to the data);
    ``clip_range``: the scale's range, to which the bands are clipped (a CI beyond the scale says
    nothing; default ``y_range``).

    Honest at small n: no band where fewer than 3 patients contribute (``low``/``high`` missing:
    :data:`core.clinical.indices.MIN_PATIENTS_FOR_CI`); there the mean is an open marker, and the
    hover of every point says how many patients it averages."""
    clip_range = clip_range if clip_range is not None else y_range
    size = trajectories.groupby("therapist")["n"].sum()
    ranked = sorted(size.index, key=lambda t: (-size[t], str(t)))
    shown = sorted(ranked[:max_therapists], key=str)
    palette = pal.CATEGORICAL
    symbols = ("circle", "square", "diamond", "triangle-up", "x", "cross")
    with_ci = _("session %{x}: mean %{y:.2f}<br>95% CI %{customdata[1]:.2f} to %{customdata[2]:.2f}"
                "<br>patients: %{customdata[0]}")
    without_ci = _("session %{x}: mean %{y:.2f}<br>patients: %{customdata[0]} (too few for a 95% CI)")
    traces = []
    any_small = False
    for i, t in enumerate(shown):
        # 4 decimals are more than a figure shows, and keep float noise (…78800111) out of the page
        g = trajectories[trajectories["therapist"] == t].sort_values("session").round({"mean": 4, "low": 4, "high": 4})
        color = palette[i % len(palette)]
        low, high = g["low"].to_numpy(float), g["high"].to_numpy(float)
        if clip_range is not None:
            low, high = np.clip(low, *clip_range), np.clip(high, *clip_range)
        bx, by = _band_segments(g["session"].to_list(), low, high)
        traces.append(go.Scatter(x=bx, y=by, fill="toself", fillcolor=color,
                                 opacity=0.10, line=dict(width=0), hoverinfo="skip", mode="lines",
                                 showlegend=False, legendgroup=str(t)))
        has_ci = np.isfinite(low) & np.isfinite(high)
        any_small = any_small or not has_ci.all()
        symbol = symbols[(i // len(palette)) % len(symbols)]
        traces.append(go.Scatter(x=g["session"], y=g["mean"], mode="lines+markers", name=_text(t), legendgroup=str(t),
                                 line=dict(color=color, width=2),
                                 marker=dict(color=color, size=7, line=dict(color=color, width=2),
                                             symbol=[symbol if ok else f"{symbol}-open" for ok in has_ci]),
                                 customdata=np.column_stack([g["n"], low, high]),
                                 hovertemplate=[_text(t) + "<br>" + (with_ci if ok else without_ci) + "<extra></extra>"
                                                for ok in has_ci]))
    name = _text(role_name(measure))
    title = (_("Mean {measure} per therapist (95% CI) — the {shown} therapists with the most sessions of {n}; "
               "choose therapists to compare others").format(measure=name, shown=len(shown), n=len(ranked))
             if len(ranked) > len(shown) else _("Mean {measure} per therapist (95% CI)").format(measure=name))
    fig = go.Figure(data=traces)
    fig.update_layout(height=440, xaxis_title=_("Session"), yaxis_title=_wrap(y_title or role_name(measure)),
                      hovermode="closest", title=dict(text=title, font=dict(size=13)),
                      legend=dict(title=dict(text=_("Therapist"), font=dict(color=pal.TEXT))),
                      margin=dict(t=50, b=40 if not any_small else 80))
    if any_small:  # under the axis title
        fig.add_annotation(text=_("Open markers: fewer than 3 patients at that session, so no 95% CI band."),
                           x=0, y=0, xref="paper", yref="paper", xanchor="left", yanchor="top", yshift=-52,
                           showarrow=False, font=dict(size=12, color=pal.MUTED_TEXT))
    if y_range is not None:
        fig.update_yaxes(range=_padded(*y_range))
    return _style(fig)


def residual_diagnostics(model):
    """Residuals vs fitted values and a normal QQ plot of the residuals (REML fit)."""
    from plotly.subplots import make_subplots
    from scipy import stats

    resid, fitted = np.asarray(model.residuals), np.asarray(model.fitted)
    fig = make_subplots(rows=1, cols=2, subplot_titles=(_("Residuals vs fitted"), _("Normal QQ plot of residuals")))
    points = dict(size=4, opacity=pal.POINTS_OPACITY, color=pal.POINTS)
    fig.add_trace(go.Scattergl(x=fitted, y=resid, mode="markers", marker=points,
                               hovertemplate=_("fitted %{x:.2f}<br>residual %{y:.2f}") + "<extra></extra>",
                               showlegend=False), row=1, col=1)
    fig.add_hline(y=0, line=dict(color=pal.REFERENCE, width=1), row=1, col=1)
    order = np.sort(resid)
    n = len(order)
    theory = stats.norm.ppf((np.arange(1, n + 1) - 0.5) / n)
    fig.add_trace(go.Scattergl(x=theory, y=order, mode="markers", marker=points,
                               hovertemplate=_("normal quantile %{x:.2f}<br>residual %{y:.2f}") + "<extra></extra>",
                               showlegend=False), row=1, col=2)
    if n > 1:
        q1, q3 = np.percentile(order, [25, 75])
        t1, t3 = stats.norm.ppf([0.25, 0.75])
        slope = (q3 - q1) / (t3 - t1)
        fig.add_trace(go.Scatter(x=theory[[0, -1]], y=q1 + slope * (theory[[0, -1]] - t1), mode="lines",
                                 line=dict(color=pal.FIT, width=2), showlegend=False, hoverinfo="skip"), row=1, col=2)
    fig.update_xaxes(title_text=_("Fitted value"), row=1, col=1)
    fig.update_yaxes(title_text=_("Residual"), row=1, col=1)
    fig.update_xaxes(title_text=_("Normal quantile"), row=1, col=2)
    fig.update_yaxes(title_text=_("Residual quantile"), row=1, col=2)
    _style(fig)
    for ann in fig.layout.annotations:
        ann.font.color = pal.TEXT
    fig.update_layout(height=380, margin=dict(t=50, b=40))
    return fig


def caterpillar(model, max_patients: int = 400):
    """Patients' random intercepts (BLUPs) sorted, with 95% intervals (±1.96 conditional SD) where
    the model gives them. With many patients every k-th patient is shown (evenly over the ranks)."""
    re = model.random_effects.sort_values("intercept").reset_index(drop=True)
    if len(re) > max_patients:
        re = re.iloc[np.linspace(0, len(re) - 1, max_patients).round().astype(int)]
    has_se = "intercept_se" in re
    err = dict(type="data", array=1.96 * re["intercept_se"], color=pal.REFERENCE, thickness=1,
               width=0) if has_se else None
    fig = go.Figure(go.Scattergl(
        x=np.arange(len(re)), y=re["intercept"], mode="markers", marker=dict(size=5, color=pal.POINTS),
        error_y=err, text=[_text(v) for v in re["patient"]],
        hovertemplate=_("patient %{text}<br>random intercept %{y:.3f}") + "<extra></extra>"))
    fig.add_hline(y=0, line=dict(color=pal.REFERENCE, width=1))
    fig.update_layout(height=360, xaxis_title=_("Patients, ranked"), yaxis_title=_("Random intercept (BLUP)"),
                      xaxis=dict(showticklabels=False), margin=dict(t=40, b=40),
                      title=dict(text=_("Patient random intercepts with 95% intervals") if has_se
                                 else _("Patient random intercepts"),
                                 font=dict(size=14)))
    return _style(fig)


def session_means_figure(summary, measures, labels: dict | None = None, ranges: dict | None = None):
    """Mean ± SD of every measure by session (``summary`` from
    :func:`core.stats.decomposition.session_summary`), one panel per measure on a shared session
    axis. ``labels``: per measure (panel title, axis title with the unit); ``ranges``: per measure
    the scale's full range (else fitted to the data)."""
    labels, ranges = labels or {}, ranges or {}
    n = len(measures)
    gap = 0.16 if n > 1 else 0.0
    height_each = (1 - gap * (n - 1)) / n
    traces, annotations, layout = [], [], {}
    for i, m in enumerate(measures, start=1):
        xa, ya = _axis("x", i), _axis("y", i)
        top = 1 - (i - 1) * (height_each + gap)
        domain = _domain(top - height_each, top)
        title, unit = labels.get(m, (role_name(m).capitalize(), _("score")))
        s = summary[summary["measure"] == m]
        colour = PATIENT_COLORS.get(m, pal.SYMPTOMS)
        traces.append(go.Scatter(x=s["session"], y=s["mean"], mode="lines+markers",
                                 name=_("{measure} mean").format(measure=role_name(m)),
                                 line=dict(color=colour, width=2), marker=dict(color=colour, size=7),
                                 error_y=dict(type="data", array=s["sd"], visible=True, color=colour, thickness=1.2),
                                 customdata=s[["n", "sd"]], xaxis=xa, yaxis=ya,
                                 hovertemplate=_("Session %{x}<br>mean %{y:.2f}<br>SD %{customdata[1]:.2f}"
                                                 "<br>N %{customdata[0]}") + "<extra></extra>"))
        layout[_axis("yaxis", i)] = dict(domain=domain, anchor=xa, title=dict(text=_wrap(unit)),
                                         **({"range": _padded(*ranges[m])} if m in ranges else {}))
        layout[_axis("xaxis", i)] = dict(anchor=ya, dtick=1, **({"matches": "x"} if i > 1 else {}),
                                         **({"title": dict(text=_("Session"))} if i == n else {}))
        annotations.append(dict(text=f"<b>{title}</b>", x=0, y=domain[1], xref="paper", yref="paper", xanchor="left",
                                yanchor="bottom", showarrow=False, font=dict(size=14, color=pal.TEXT)))
    fig = go.Figure(data=traces)
    fig.update_layout(height=280 * n + 40, showlegend=False, hovermode="x unified", annotations=annotations,
                      margin=dict(t=30, b=40, l=70, r=20), **layout)
    return _style(fig)


#: Line colours of the measures on the patient chart (the status markers carry the status colours).
PATIENT_COLORS = {"alliance": pal.ALLIANCE, "symptoms": pal.SYMPTOMS}
#: Early-warning statuses: label (English; translate with ``_()`` where shown), colour, marker
#: symbol. Worse = red ▲, a warning = amber ◆, better = green ●, no status = grey ○; each colour
#: ≥ 4.5:1 against white and against the band.
STATUS_STYLE = {
    "not_on_track": (N_("not on track"), pal.WORSE, "triangle-up"),
    "at_risk": (N_("at risk"), pal.WARNING, "diamond"),
    "on_track": (N_("on track"), pal.BETTER, "circle"),
    "unknown": (N_("no status"), pal.NEUTRAL, "circle-open"),
}
#: The default legend entry of the expected course's band (:func:`patient_chart`).
BAND_LABEL = N_("not on track beyond this line (given the earlier scores)")
#: The same statuses as one character, for text (tables, panel titles).
STATUS_GLYPH = {"not_on_track": "▲", "at_risk": "◆", "on_track": "●", "unknown": "○"}
EXPECTED_COLOR = pal.EXPECTED


def _axis(name: str, i: int) -> str:
    """Trace axis reference ('x', 'x2', …) of subplot row ``i`` (1-based)."""
    return name if i == 1 else f"{name}{i}"


def _domain(low: float, high: float) -> list[float]:
    """An axis domain within [0, 1] (Plotly rejects -1e-17 from float sums)."""
    return [max(0.0, round(low, 6)), min(1.0, round(high, 6))]


def _segments(x, low, high):
    """Vertical segments (x, low)–(x, high) as one line trace's coordinates, separated by gaps."""
    xs, ys = [], []
    for a, b, c in zip(x, low, high):
        if np.isfinite(b) and np.isfinite(c):
            xs += [a, a, None]
            ys += [b, c, None]
    return xs, ys


def patient_chart(sessions, measures, *, signal=None, cutoff: float | None = None, labels: dict | None = None,
                  band_label: str | None = None,
                  symptom_measure: str = "symptoms", status_text: bool = True, ranges: dict | None = None,
                  details: bool = False):
    """One patient's course: the symptom measure with its early-warning signal on top, alliance with
    its rupture flags below, on a shared session axis.

    ``sessions``: that patient's rows from :func:`core.clinical.indices.patient_sessions` and
    :func:`core.clinical.indices.flag_ruptures_so_far`, sorted by session. ``signal``: that patient's
    rows of :func:`core.clinical.signal.session_signal`. ``labels``: per measure a panel title and
    the axis title with the unit, e.g. ``("Symptoms: lower is better", "OQ-45.2 total (0–180,
    higher = more symptoms)")``. ``ranges``: per measure the axis range, e.g. the alliance scale's
    full range ``(1, 7)`` (a measure not named is fitted to its data).

    By default each panel draws only what a glance needs:

    * Symptoms: the patient's expected course from where they started (dashed) with the
      not-on-track bound of each session's score given the earlier ones (``flag_bound``, dotted;
      without that column the band ``lower``–``upper``; ``band_label``, default :data:`BAND_LABEL`),
      the clinical ``cutoff`` as a line, the scores as a line,
      and each session as a marker whose colour and shape say its status (not on track ▲ red, at
      risk ◆ amber, on track ● green, no status ○ grey), written beside the marker where it changes
      and at the latest session.
    * Alliance: the scores and the ruptures as ✕ with "rupture" written beside them.

    ``details=True`` adds the at-risk bound (dotted), the patient's alliance mean so far (dashed),
    the rupture limit so far (dotted) and each session's deviation from the mean so far as a bar.
    Scores that are all whole numbers (an OQ-45.2 total) are shown without decimals.

    The layout is written directly (no ``make_subplots``), which keeps a rerun cheap: the figure is
    rebuilt every time a therapist switches patients.
    """
    labels, ranges = labels or {}, ranges or {}
    band_label = _(BAND_LABEL) if band_label is None else band_label
    order = [m for m in (symptom_measure, "alliance") if m in measures] + \
        [m for m in measures if m not in (symptom_measure, "alliance")]
    n = len(order)
    gap = 0.16
    height_each = (1 - gap * (n - 1)) / n
    x = sessions["session"].to_numpy()
    traces, shapes, annotations = [], [], []
    layout = {}
    for i, m in enumerate(order, start=1):
        xa, ya = _axis("x", i), _axis("y", i)
        top = 1 - (i - 1) * (height_each + gap)
        domain = _domain(top - height_each, top)
        title, unit = labels.get(m, (role_name(m).capitalize(), _("score")))
        layout[_axis("yaxis", i)] = dict(domain=domain, anchor=xa, title=dict(text=_wrap(unit)),
                                         **({"range": _padded(*ranges[m])} if m in ranges else {}))
        annotations.append(dict(text=f"<b>{title}</b>", x=0, y=domain[1], xref="paper", yref="paper", xanchor="left",
                                yanchor="bottom", showarrow=False, font=dict(size=14, color=pal.TEXT)))
        layout[_axis("xaxis", i)] = dict(anchor=ya, showticklabels=True, **({"dtick": 1} if len(x) <= 30 else {}),
                                         **({"matches": "x"} if i > 1 else {}),
                                         **({"title": dict(text=_("Session"))} if i == n else {}))
        values = sessions[m].to_numpy(float)
        d = decimals_for(values)
        fmt = f"%{{y:.{d}f}}"
        fmt_model = f"%{{y:.{max(d, 1)}f}}"  # model values (expected course) keep one decimal
        if m == symptom_measure:
            sig = None
            if signal is not None and len(signal):
                sig = signal.set_index("session").reindex(sessions["session"])
            if sig is not None and sig["expected"].notna().any():
                ok = sig["expected"].notna().to_numpy()
                xs = list(x[ok])
                if "flag_bound" in sig.columns:
                    # the not-on-track bound on each session's score, given the earlier ones (a gap
                    # where the earlier scores alone keep the session not on track)
                    traces.append(go.Scatter(x=x, y=sig["flag_bound"].to_numpy(float), mode="lines+markers",
                                             line=dict(color=pal.WORSE, dash="dot", width=1.5),
                                             marker=dict(size=5, color=pal.WORSE), connectgaps=False,
                                             name=band_label,
                                             hovertemplate=_("not-on-track bound {value}").format(value=fmt_model)
                                             + "<extra></extra>", xaxis=xa, yaxis=ya))
                else:
                    lo, hi = sig["lower"].to_numpy()[ok], sig["upper"].to_numpy()[ok]
                    traces.append(go.Scatter(x=xs + xs[::-1], y=list(hi) + list(lo[::-1]), fill="toself",
                                             fillcolor=pal.EXPECTED_BAND, line=dict(width=0), mode="lines",
                                             name=band_label, hoverinfo="skip", xaxis=xa, yaxis=ya))
                # the expected course starts where the patient started
                start = sig["observed"].to_numpy()[0] if not ok[0] else None
                ex_x = ([x[0]] if start is not None and np.isfinite(start) else []) + xs
                ex_y = ([start] if start is not None and np.isfinite(start) else []) + list(sig["expected"].to_numpy()[ok])
                traces.append(go.Scatter(x=ex_x, y=ex_y, mode="lines", line=dict(color=pal.EXPECTED, dash="dash", width=2),
                                         name=_("expected course from this starting point"),
                                         hovertemplate=_("expected {value}").format(value=fmt_model) + "<extra></extra>",
                                         xaxis=xa, yaxis=ya))
                if details:
                    traces.append(go.Scatter(x=xs, y=sig["at_risk_bound"].to_numpy()[ok], mode="lines",
                                             line=dict(color=pal.WARNING, dash="dot", width=1.5),
                                             name=_("at-risk bound"),
                                             hovertemplate=_("at-risk bound {value}").format(value=fmt_model)
                                             + "<extra></extra>",
                                             xaxis=xa, yaxis=ya))
            if cutoff is not None:  # a trace, not a shape, so that the axis range includes it
                cut = float(cutoff)
                traces.append(go.Scatter(x=[x.min(), x.max()], y=[cutoff, cutoff], mode="lines",
                                         line=dict(color=pal.CUTOFF, width=1),
                                         name=_("clinical cut-off ({cutoff:.3g})").format(cutoff=cut),
                                         hovertemplate=_("clinical cut-off {cutoff:.3g}").format(cutoff=cut)
                                         + "<extra></extra>", xaxis=xa, yaxis=ya))
            traces.append(go.Scatter(x=x, y=values, mode="lines", line=dict(color=PATIENT_COLORS["symptoms"], width=2),
                                     name=title, hoverinfo="skip", showlegend=False, connectgaps=True,
                                     xaxis=xa, yaxis=ya))
            status = sig["status"].fillna("unknown").to_numpy() if sig is not None else np.full(len(x), "unknown")
            reason = sig["reason"].fillna("").to_numpy() if sig is not None else np.full(len(x), "")
            # the status is written where it changes and at the latest session (the legend, the
            # marker shapes and the hover say it for every session), so labels do not pile up
            changes = np.r_[True, status[1:] != status[:-1]]
            changes[-1] = True
            for key, (word, color, symbol) in STATUS_STYLE.items():
                sel = (status == key) & np.isfinite(values)
                if not sel.any():
                    continue
                text = _(word)
                words = [_("start") if (key == "unknown" and j == 0) else (text if changes[j] else "")
                         for j in np.flatnonzero(sel)]
                traces.append(go.Scatter(
                    x=x[sel], y=values[sel], mode="markers+text" if status_text else "markers",
                    marker=dict(symbol=symbol, size=12, color=color, line=dict(color=color, width=2)),
                    text=words if status_text else None,
                    # the first session's label leans right and the latest one's left, so that they stay
                    # inside the plot at 800 px (Plotly clips text at the plot area)
                    textposition=["top left" if j == len(x) - 1 else "top right" if j == 0 and len(x) > 1
                                  else "top center" for j in np.flatnonzero(sel)],
                    textfont=dict(color=color, size=12), name=text, customdata=np.asarray(reason[sel], dtype=object),
                    hovertemplate=_("Session %{{x}}: score {value}").format(value=fmt)
                    + f"<br><b>{text}</b><br>%{{customdata}}<extra></extra>",
                    xaxis=xa, yaxis=ya))
        else:
            color = PATIENT_COLORS.get(m, pal.SYMPTOMS)
            mean_col = f"{m}_mean_so_far"
            if details and mean_col in sessions:
                mean = sessions[mean_col].to_numpy(float)
                for below, name, bar_colour in ((True, _("below own mean so far"), pal.WORSE),
                                                (False, _("above own mean so far"), pal.BETTER)):
                    sel = (values < mean) if below else (values >= mean)
                    bx, by = _segments(x[sel], mean[sel], values[sel])
                    if bx:
                        traces.append(go.Scatter(x=bx, y=by, mode="lines", line=dict(color=bar_colour, width=5),
                                                 name=name, hoverinfo="skip", xaxis=xa, yaxis=ya))
                traces.append(go.Scatter(x=x, y=mean, mode="lines",
                                         line=dict(color=pal.NEUTRAL, dash="dash", width=1.5),
                                         name=_("own mean so far"),
                                         hovertemplate=_("own mean so far %{y:.2f}") + "<extra></extra>",
                                         xaxis=xa, yaxis=ya))
                if m == "alliance" and "rupture_limit" in sessions:
                    traces.append(go.Scatter(x=x, y=sessions["rupture_limit"].to_numpy(), mode="lines",
                                             line=dict(color=pal.NEUTRAL, dash="dot", width=1.5),
                                             name=_("rupture limit so far"),
                                             hovertemplate=_("rupture limit %{y:.2f}") + "<extra></extra>",
                                             xaxis=xa, yaxis=ya))
            traces.append(go.Scatter(x=x, y=values, mode="lines+markers", line=dict(color=color, width=2),
                                     marker=dict(size=7, color=color), name=role_name(m), connectgaps=True,
                                     hovertemplate=_("Session %{{x}}: score {value}").format(value=fmt)
                                     + "<extra></extra>", xaxis=xa, yaxis=ya))
            if m == "alliance" and "rupture" in sessions:
                r = sessions[sessions["rupture"].astype(bool)]
                if len(r):
                    label = r["repaired"].map({True: _("repaired in the next session"),
                                               False: _("not repaired in the next session")})
                    label = label.astype(object).where(label.notna(), _("no next session yet"))
                    traces.append(go.Scatter(
                        x=r["session"].to_numpy(), y=r[m].to_numpy(), mode="markers+text", name=_("rupture"),
                        marker=dict(symbol="x", size=13, color=pal.WORSE),
                        # the label on the side with room: right of a rupture in the first half of the
                        # sessions, left of one in the second (at 800 px "rupture" was cut to "ruptur")
                        text=[_("rupture")] * len(r),
                        textposition=["middle left" if len(x) > 1 and v > (x.min() + x.max()) / 2 else "middle right"
                                      for v in r["session"].to_numpy()],
                        textfont=dict(color=pal.WORSE, size=12), customdata=list(label),
                        hovertemplate=_("Rupture in session %{x}: %{customdata}") + "<extra></extra>",
                        xaxis=xa, yaxis=ya))
    height = 290 * n + 130
    plot_px = height - 30 - 130
    return go.Figure(data=traces, layout=_styled(dict(
        layout, height=height, hovermode="closest", shapes=shapes, annotations=annotations,
        legend=dict(orientation="h", yanchor="top", y=-56 / plot_px, x=0, font=dict(size=12)),
        margin=dict(t=30, b=130, l=70, r=20))))


#: Longest patient ID that six panels a row leave room for at 800 px (about 95 px a panel); longer
#: IDs (a researcher's pseudonyms, ``P-`` and 12 hex digits) get four panels a row.
SHORT_ID = 9


def small_multiples(sessions, patients, measure: str, *, cutoff: float | None = None, columns: int | None = None,
                    panel_height: int = 140, status: dict | None = None, y_title: str | None = None,
                    y_range: tuple[float, float] | None = None):
    """One small panel per patient (in the order of ``patients``): ``measure`` by session, all
    panels on the same axes ranges, the clinical ``cutoff`` as a dotted line where given.

    ``status``: patient → early-warning status of the latest session; the panel's line and its title
    (the ID and the status's symbol, ``D017 ▲``) take the status colour, so colour is never the only
    cue; the status in words is in the hover (and the page's legend says what each symbol means).
    The title is short so that it fits its panel at 800 px: ``columns`` (default 6 a row, 4 for
    IDs longer than :data:`SHORT_ID`). ``y_title``: the measure with its unit (written once, left
    of the grid); ``y_range``: the scale's full range (else fitted to the data).

    Pass a page of patients (the overview shows 24): Plotly's facets become unreadable, and
    fail, beyond about a hundred panels. The grid is laid out directly rather than through
    Plotly Express facets, which cost about 0.3 s per redraw on the benchmark machine.
    """
    patients = list(patients)
    status = status or {}
    n = len(patients)
    if columns is None:
        columns = 6 if max((len(str(p)) for p in patients), default=0) <= SHORT_ID else 4
    rows = max(1, -(-n // columns))
    hgap, vgap = 0.02, 0.07 if rows > 1 else 0.0
    width = (1 - hgap * (columns - 1)) / columns
    height = (1 - vgap * (rows - 1)) / rows
    by_patient = {p: g.sort_values("session") for p, g in sessions[sessions["patient"].isin(patients)].groupby("patient")}
    d = decimals_for(sessions.loc[sessions["patient"].isin(patients), measure]) if n else 2
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
        key = status.get(p)
        word, colour, symbol = STATUS_STYLE.get(key, ("", pal.SYMPTOMS, "circle"))
        label = _text(p) if key is None else f"{_text(p)} {STATUS_GLYPH[key]}"
        said = "" if key is None else f"<br><b>{STATUS_GLYPH[key]} {_(word)}</b>" if word else ""
        annotations.append(dict(text=label, x=x0 + width / 2, y=y_domain[1], xref="paper", yref="paper",
                                xanchor="center", yanchor="bottom", showarrow=False,
                                font=dict(size=11, color=colour if key is not None else pal.TEXT)))
        g = by_patient.get(p)
        if g is not None:
            traces.append(go.Scatter(x=g["session"].to_numpy(), y=g[measure].to_numpy(), mode="lines+markers",
                                     name=str(p), line=dict(color=colour, width=1.8), marker=dict(size=5, color=colour),
                                     connectgaps=True,
                                     hovertemplate=_text(p) + said + "<br>" + _("session %{{x}}: {value}").format(
                                         value=f"%{{y:.{d}f}}") + "<extra></extra>",
                                     xaxis=xa, yaxis=ya))
        if cutoff is not None:
            shapes.append(dict(type="line", xref=f"{xa} domain", yref=ya, x0=0, x1=1, y0=cutoff, y1=cutoff,
                               line=dict(color=pal.REFERENCE, width=1, dash="dot")))
    annotations.append(dict(text=_("Session"), x=0.5, y=0, xref="paper", yref="paper", xanchor="center", yanchor="top",
                            yshift=-22, showarrow=False, font=dict(size=12, color=pal.TEXT)))
    if y_title:
        annotations.append(dict(text=_wrap(y_title, 40), x=0, y=0.5, xref="paper", yref="paper", xanchor="right",
                                yanchor="middle", xshift=-36, textangle=-90, showarrow=False,
                                font=dict(size=12, color=pal.TEXT)))
    if cutoff is not None:
        annotations.append(dict(text=_("Dotted line: clinical cut-off ({cutoff:.3g}).").format(cutoff=float(cutoff)),
                                x=1, y=0, xref="paper",
                                yref="paper", xanchor="right", yanchor="top", yshift=-22, showarrow=False,
                                font=dict(size=12, color=pal.MUTED_TEXT)))
    if y_range is not None:
        layout["yaxis"]["range"] = _padded(*y_range, share=0.06)
    layout = _styled(dict(layout, height=panel_height * rows + 90, showlegend=False, annotations=annotations,
                          shapes=shapes, margin=dict(t=30, b=50, l=80 if y_title else 40, r=10)))
    for key in layout:
        if key.startswith(("xaxis", "yaxis")):
            layout[key]["showline"] = False
    return go.Figure(data=traces, layout=layout)


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
        return number(x, ".2g").replace("-", "−")
    if x != 0 and abs(x) < 0.095 and digits == 2:
        return number(x, ".3f").replace("-", "−")
    return number(x, f".{digits}f").replace("-", "−")


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
    dark, grey, muted = "#1f3b73", "#8a8a8a", "#5f5f5f"  # grey: 3:1 on the boxes
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
            session_text = _text(_("session {session}").format(session=s))
            sub = f"<br><span style='font-size:{size - 2}px'>{session_text}</span>"
            box(t - w, t + w, y_a, _("Alliance") + sub, "#eef3fb")
            box(t - w, t + w, y_s, _("Symptoms") + sub, "#fbeeee")
        shapes.append(dict(type="line", x0=t, y0=y_ria - 0.2, x1=t, y1=y_a + h, line=dict(color=grey, width=1)))
        shapes.append(dict(type="line", x0=t, y0=y_ris + 0.2, x1=t, y1=y_s - h, line=dict(color=grey, width=1)))
    intercept_texts = {
        "alliance_variance": N_("Random intercept, alliance (each patient's usual level): variance {variance}"),
        "symptoms_variance": N_("Random intercept, symptoms (each patient's usual level): variance {variance}"),
    }
    for y, key in ((y_ria, "alliance_variance"), (y_ris, "symptoms_variance")):
        box(left, right, y, _(intercept_texts[key]).format(
            variance=_signed(ri[key], 3) + _stars(ri.get(key + '_p'))), "#f4f4f4")

    entries = {}
    for key, entry in result.lagged.items():
        if isinstance(entry, list):
            entries[key] = entry
        else:
            common = {k: v for k, v in entry.items() if k not in ("std_all", "from_session")}
            entries[key] = [{**common, "std_all": std, "from_session": s}
                            for std, s in zip(entry["std_all"], entry["from_session"])]
    names = {"alliance_autoregressive": N_("alliance → next alliance"),
             "symptoms_autoregressive": N_("symptoms → next symptoms"),
             "alliance_to_symptoms": N_("alliance → next symptoms"),
             "symptoms_to_alliance": N_("symptoms → next alliance")}
    for key, items in entries.items():
        for e in items:
            t = sessions.index(int(e["from_session"]))
            sig = e["p"] is not None and e["p"] < 0.05
            value = e["std_all"] if standardized else e["estimate"]
            text = _signed(value) + _stars(e["p"])
            width = 2.4 if sig else 1.2
            hover = _("{effect}, session {start} → {end}<br>estimate {estimate:.3f} (SE {se:.3f}), p = {p:.3g}"
                      "<br>std.all {std_all:.3f}").format(
                effect=_(names[key]), start=e["from_session"], end=sessions[t + 1], estimate=e["estimate"],
                se=e["se"], p=e["p"], std_all=e["std_all"])
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
    cov_text = (_("covariance") + f"<br>{_signed(ri['covariance'], 3)}{_stars(p_cov)}"
                + (f"<br>r = {_signed(corr)}" if corr is not None else ""))
    label(right + 0.62, (y_ria + y_ris) / 2, cov_text, dark if cov_sig else muted,
          _("random-intercept covariance {covariance:.4f} (SE {se:.4f}), p = {p:.3g}").format(
              covariance=float(ri["covariance"]), se=float(ri.get("covariance_se", float("nan"))), p=float(p_cov))
          if p_cov is not None else _("random-intercept covariance"), anchor="left")
    fig = go.Figure(go.Scatter(x=hover_x, y=hover_y, mode="markers", marker=dict(size=18, opacity=0),
                               hovertext=hover_text, hoverinfo="text", showlegend=False))
    if standardized:
        key_text = _("Standardized (std.all) estimates; * p < .05, ** p < .01, *** p < .001; grey: not significant.")
        equal = _("Lagged effects equal over sessions (std.all differs by session pair).")
        default_title = _("RI-CLPM, sessions {first}–{last}: standardized (std.all) lagged effects")
    else:
        key_text = _("Unstandardized estimates; * p < .05, ** p < .01, *** p < .001; grey: not significant.")
        equal = _("Lagged effects equal over sessions.")
        default_title = _("RI-CLPM, sessions {first}–{last}: unstandardized lagged effects")
    second = ([] if result.free_lags else [equal]) + \
        ([_("A3 = alliance at session 3, S3 = symptoms at session 3.")] if compact else [])
    fig.update_layout(
        shapes=shapes, annotations=notes + [dict(
            xref="paper", yref="paper", x=0, y=-0.02, xanchor="left", yanchor="top", showarrow=False, align="left",
            text=key_text + "<br>" + " ".join(second),
            font=dict(size=11, color=pal.MUTED_TEXT))],
        title=dict(text=title or default_title.format(first=str(sessions[0]), last=str(sessions[-1])),
                   font=dict(size=14, color=pal.TEXT)),
        xaxis=dict(visible=False, range=[left - 0.15, right + 1.75], fixedrange=True),
        yaxis=dict(visible=False, range=[y_ris - 0.3, y_ria + 0.3], fixedrange=True),
        height=490, margin=dict(l=5, r=5, t=45, b=50), plot_bgcolor=pal.BACKGROUND, paper_bgcolor=pal.BACKGROUND,
        font=dict(color=pal.TEXT), hovermode="closest",
    )
    return _local_numbers(fig)


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
                                 hoverinfo="skip", name=_("95% interval")))
    fig.add_trace(go.Scatter(
        x=n, y=power, mode="lines+markers", name=_("power"), line=dict(color="#2980b9", width=2),
        marker=dict(size=9),
        error_y=dict(type="data", symmetric=False, array=high - power, arrayminus=power - low,
                     color="#2980b9", thickness=1.2, width=4),
        customdata=np.column_stack([low, high, table["nsim"].to_numpy(int), table["n_failed"].to_numpy(int)]),
        hovertemplate=_("%{x} patients: power %{y:.1%} (95% CI %{customdata[0]:.1%} to %{customdata[1]:.1%})"
                        "<br>%{customdata[2]} simulations, %{customdata[3]} failed fits") + "<extra></extra>",
    ))
    fig.add_hline(y=target, line=dict(color="#c0392b", dash="dash", width=1),
                  annotation_text=_("{target:.0%} power").format(target=float(target)),
                  annotation_position="bottom right")
    fig.add_vline(x=result.n_patients_observed, line=dict(color="grey", dash="dot", width=1),
                  annotation_text=_("observed: {n}").format(n=int(result.n_patients_observed)),
                  annotation_position="top left")
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", title=_("Power"))
    fig.update_xaxes(title=_("Patients"), tickvals=list(n), rangemode="tozero")
    fig.update_layout(title=title or None, height=380, showlegend=False,
                      margin=dict(l=10, r=10, t=50 if title else 20, b=40))
    return _local_numbers(fig)


def early_alliance_scatter(result, alliance_title: str | None = None, outcome_title: str | None = None) -> go.Figure:
    """Early alliance (x) against the post-treatment outcome (y), one point per patient of a single clinic
    (:class:`core.stats.alliance_outcome.AllianceOutcomeResult`), with the coefficient adjusted for intake
    drawn as a line through the means: slope ``β · SD(outcome) / SD(early alliance)`` in the scores' own
    units (the expected outcome of a patient at the mean intake). The adjusted β, its 95% CI and r are
    written above the plot."""
    patients = result.patients
    stage = next(iter(result.stage1.values()))
    x = patients["early_alliance"].to_numpy(float)
    y = patients["post"].to_numpy(float)
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=x, y=y, mode="markers", name=_("patients"),
        marker=dict(size=7, color=pal.POINTS, opacity=pal.POINTS_OPACITY),
        text=[_text(p) for p in patients["patient"]], customdata=patients["intake"].to_numpy(float),
        hovertemplate=_("patient %{text}<br>early alliance %{x:.2f}<br>outcome %{y:.1f}<br>intake %{customdata:.1f}")
        + "<extra></extra>"))
    slope = stage["estimate"] * np.std(y, ddof=1) / np.std(x, ddof=1)
    xs = np.array([x.min(), x.max()])
    fig.add_trace(go.Scatter(
        x=xs, y=y.mean() + slope * (xs - x.mean()), mode="lines", line=dict(color=pal.FIT, width=2.5),
        name=_("adjusted for intake"),
        hovertemplate=_("adjusted for intake: {slope:.2f} per point of early alliance").format(slope=float(slope))
        + "<extra></extra>"))
    first, last = result.early
    fig.add_annotation(
        xref="paper", yref="paper", x=0, y=1, xanchor="left", yanchor="bottom", yshift=6, showarrow=False,
        align="left", font=dict(size=12, color=pal.MUTED_TEXT),
        text=_("β = {b} (95% CI {low} to {high}), adjusted for intake; r = {r}; {n} patients").format(
            b=format_number(stage["estimate"], 2), low=format_number(stage["ci_low"], 2),
            high=format_number(stage["ci_high"], 2), r=format_number(stage["r"], 2), n=stage["n_patients"]))
    fig.update_layout(
        xaxis_title=alliance_title or _("Early alliance (mean of sessions {first}–{last})").format(first=first,
                                                                                                  last=last),
        yaxis_title=outcome_title or (_("Post-treatment score ({column})").format(column=result.post_column)
                                      if result.outcome == "post" else
                                      _("Last symptom score after session {last}").format(last=last)),
        height=420, showlegend=True,
        legend=dict(orientation="h", yanchor="top", y=-0.18, x=0), margin=dict(l=10, r=10, t=50, b=90))
    return _style(fig)


def funnel_plot(result, effect_label: str | None = None) -> go.Figure:
    """Funnel plot as metafor's ``funnel(res)`` draws it for a model without moderators: each study's
    estimate (x) against its standard error (y, 0 at the top), a vertical line at the pooled estimate and
    the pseudo 95% confidence region ``estimate ± 1.96 SE`` (a triangle); with Egger's test
    (:func:`core.stats.meta.egger_test`) its regression line (the estimate expected at each SE) dashed and
    its z and p above the plot."""
    studies = result.studies
    se = studies["se"].to_numpy(float)
    est = studies["estimate"].to_numpy(float)
    top = float(se.max()) * 1.05 if len(se) and se.max() > 0 else 1.0
    mu = float(result.estimate)
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=[mu - 1.96 * top, mu, mu + 1.96 * top], y=[top, 0, top], mode="lines", fill="toself",
        fillcolor=pal.EXPECTED_BAND, line=dict(color=pal.REFERENCE, width=1, dash="dot"),
        name=_("pseudo 95% confidence region"), hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=[mu, mu], y=[0, top], mode="lines", line=dict(color=pal.FIT, width=2),
                             name=_("pooled estimate"), hoverinfo="skip"))
    egger = result.regtest or {}
    if egger.get("limit_estimate") is not None and egger.get("slope") is not None:
        ys = np.array([0.0, top])
        fig.add_trace(go.Scatter(x=egger["limit_estimate"] + egger["slope"] * ys, y=ys, mode="lines",
                                 line=dict(color=pal.EXPECTED, width=2, dash="dash"),
                                 name=_("Egger's regression line"), hoverinfo="skip"))
    fig.add_trace(go.Scatter(
        x=est, y=se, mode="markers", name=_("studies"), marker=dict(size=9, color=pal.STUDY, symbol="circle"),
        text=[_text(v) for v in studies["label"]],
        hovertemplate=_("%{text}<br>estimate %{x:.3f}<br>SE %{y:.3f}") + "<extra></extra>"))
    if egger.get("z") is not None:
        stat = "t" if egger.get("test") == "t" else "z"
        note = _("Egger's test for funnel-plot asymmetry: {stat} = {value}, p = {p}").format(
            stat=stat, value=format_number(egger["z"], 2), p=number(float(egger["p"]), ".3f"))
    else:
        note = _("Egger's test needs at least 3 studies with different standard errors.")
    fig.add_annotation(xref="paper", yref="paper", x=0, y=1, xanchor="left", yanchor="bottom", yshift=6,
                       showarrow=False, align="left", font=dict(size=12, color=pal.MUTED_TEXT), text=note)
    fig.update_yaxes(autorange=False, range=[top, 0], title_text=_("Standard error"))
    fig.update_layout(xaxis_title=effect_label or _("Effect"), height=420, showlegend=True,
                      legend=dict(orientation="h", yanchor="top", y=-0.18, x=0),
                      margin=dict(l=10, r=10, t=50, b=90))
    return _style(fig)
