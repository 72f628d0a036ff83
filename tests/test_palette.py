"""WCAG contrast of every colour the figures draw with (issue 18): text ≥ 4.5:1, marks ≥ 3:1,
against the white background and against the see-through bands marks lie on."""
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from core.reporting import figures as F
from core.reporting import palette as pal

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"


def test_contrast_ratio_matches_wcag_reference_values():
    # WCAG 2.2: black on white is 21:1, equal colours 1:1; #767676 is the lightest grey that passes 4.5:1
    assert pal.contrast_ratio("#000000", "#ffffff") == pytest.approx(21.0)
    assert pal.contrast_ratio("#ffffff", "#ffffff") == pytest.approx(1.0)
    assert pal.contrast_ratio("#767676") == pytest.approx(4.54, abs=0.01)
    assert pal.contrast_ratio("#777777") < 4.5
    # the order of the two colours does not matter; short hex and rgb() read the same
    assert pal.contrast_ratio("#c62828", "#fff") == pytest.approx(pal.contrast_ratio("rgb(255,255,255)", "#c62828"))
    # Streamlit's chart grey, which drew axis titles and captions before: 3.7:1, below AA
    assert pal.contrast_ratio("#808495") == pytest.approx(3.72, abs=0.01)


def test_opacity_blends_into_the_background():
    assert pal.blend("rgba(0,0,0,0.5)") == "#808080"
    assert pal.blend("#000000", opacity=0.25) == "#bfbfbf"
    assert pal.contrast_ratio("#000000", opacity=0.5) == pytest.approx(pal.contrast_ratio("#808080"))


@pytest.mark.parametrize("name", ["WORSE", "WARNING", "BETTER", "NEUTRAL"])
def test_status_colours_pass_as_text_on_white_and_on_the_band(name):
    colour = getattr(pal, name)
    band = pal.blend(pal.EXPECTED_BAND)
    assert pal.contrast_ratio(colour) >= pal.TEXT_MINIMUM
    assert pal.contrast_ratio(colour, band) >= pal.TEXT_MINIMUM
    # each status keeps its own marker shape, so colour is not the only cue
    assert len({symbol for _, _, symbol in F.STATUS_STYLE.values()}) == 4


def test_every_named_colour_passes():
    text = [pal.TEXT, pal.MUTED_TEXT, pal.EXPECTED, pal.WORSE, pal.WARNING, pal.BETTER, pal.NEUTRAL]
    marks = [pal.REFERENCE, pal.SYMPTOMS, pal.ALLIANCE, pal.CUTOFF, pal.FIT, pal.STUDY, *pal.CATEGORICAL]
    assert all(pal.contrast_ratio(c) >= pal.TEXT_MINIMUM for c in text)
    assert all(pal.contrast_ratio(c) >= pal.GRAPHIC_MINIMUM for c in marks)
    assert pal.contrast_ratio(pal.POINTS, opacity=pal.POINTS_OPACITY) >= pal.GRAPHIC_MINIMUM
    assert len(set(pal.CATEGORICAL)) == len(pal.CATEGORICAL) == 12


def test_the_check_finds_a_pale_line_an_unset_colour_and_pale_text():
    fig = go.Figure(go.Scatter(x=[1, 2], y=[1, 2], mode="lines", line=dict(color="#c8c8c8"), name="pale"))
    fig.add_trace(go.Scatter(x=[1, 2], y=[2, 1], mode="markers", name="unset"))
    fig.update_layout(plot_bgcolor="white", font=dict(color="#212121"),
                      annotations=[dict(text="note", x=1, y=1, showarrow=False, font=dict(color="#9e9e9e"))])
    problems = " | ".join(pal.figure_contrast_problems(fig))
    assert "trace 'pale' line: #c8c8c8" in problems and "1.67:1" in problems
    assert "trace 'unset' markers: colour not set" in problems
    assert "annotation 1 ('note'): #9e9e9e" in problems
    assert "xaxis" not in problems or "colour not set" in problems  # axis labels left to a theme are flagged
    # markers sized by an array are drawn at 70% opacity unless the figure says otherwise
    bubbles = go.Figure(go.Scatter(x=[1, 2], y=[1, 2], mode="markers", marker=dict(size=np.array([8, 20]),
                                                                                    color="#8a8a8a")))
    bubbles.update_layout(plot_bgcolor="white", font=dict(color="#212121"), xaxis=dict(tickfont=dict(color="#212121")),
                          yaxis=dict(tickfont=dict(color="#212121")))
    assert any("markers: #8a8a8a" in p for p in pal.figure_contrast_problems(bubbles))
    bubbles.update_traces(marker_opacity=1)
    assert pal.figure_contrast_problems(bubbles) == []


# ---------------------------------------------------------------- every figure the dashboard draws

@pytest.fixture(scope="module")
def demo():
    from core.clinical.indices import flag_ruptures_so_far, patient_sessions
    from core.clinical.signal import SignalSettings, compute_signal
    from core.demo import demo_clinic

    data = demo_clinic()
    signal = compute_signal(data, SignalSettings()).sessions
    sessions = flag_ruptures_so_far(patient_sessions(data, ["alliance", "symptoms"]))
    return data, signal, sessions


def _figures(demo):
    from core.clinical.indices import therapist_trajectories
    from core.stats.decomposition import session_summary
    from core.stats.meta import pool_effects
    from core.stats.riclpm import fit_riclpm

    data, signal, sessions = demo
    mine = sessions[sessions["patient"] == "D017"].sort_values("session")
    labels = {"symptoms": ("Symptoms (lower is better)", "OQ-45.2 total (0–180, higher = more symptoms)"),
              "alliance": ("Alliance (higher is better)", "Alliance, ANS mean item score (1–7)")}
    pool = pd.read_csv(DATA / "pool_bcg.csv")
    rng = np.random.default_rng(1)
    model = SimpleNamespace(residuals=rng.normal(size=200), fitted=rng.normal(size=200),
                            random_effects=pd.DataFrame({"patient": [f"P{i}" for i in range(50)],
                                                         "intercept": rng.normal(size=50),
                                                         "intercept_se": np.full(50, 0.3)}))
    patients = sorted(data["patient"].unique())[:24]
    status = dict(zip(patients, ["not_on_track", "at_risk", "on_track", "unknown"] * 6))
    riclpm = fit_riclpm(pd.read_csv(DATA / "paperlike_public.csv", dtype={"patient": str}), 1, 4)
    for details in (False, True):
        yield f"patient chart (details={details})", F.patient_chart(
            mine, ["alliance", "symptoms"], signal=signal[signal["patient"] == "D017"], cutoff=63.5, labels=labels,
            ranges={"alliance": (1, 7)}, details=details)
    yield "small multiples", F.small_multiples(sessions, patients, "symptoms", cutoff=63.5, status=status,
                                               y_title=labels["symptoms"][1])
    yield "small multiples, alliance", F.small_multiples(sessions, patients, "alliance", status=status,
                                                         y_title=labels["alliance"][1], y_range=(1, 7))
    yield "therapist trajectories", F.therapist_trajectory_figure(
        therapist_trajectories(data, "symptoms"), "symptoms", y_title=labels["symptoms"][1])
    yield "forest plot", F.forest_plot(pool_effects(pool["estimate"], pool["se"], labels=pool["study"].tolist()),
                                       effect_label="log risk ratio")
    yield "between and within", F.between_within_scatter(data)
    yield "spaghetti", F.spaghetti(data, "symptoms", pd.DataFrame({"session": [1, 8], "expected": [80.0, 60.0]}))
    yield "residuals", F.residual_diagnostics(model)
    yield "caterpillar", F.caterpillar(model)
    yield "session means", F.session_means_figure(session_summary(data, ["alliance", "symptoms"]),
                                                  ["alliance", "symptoms"], labels, {"alliance": (1, 7)})
    for standardized in (False, True):
        yield f"RI-CLPM diagram (standardized={standardized})", F.riclpm_path_diagram(riclpm, standardized)


def test_every_figure_meets_wcag_aa(demo):
    checked = 0
    for name, fig in _figures(demo):
        problems = pal.figure_contrast_problems(fig)
        assert problems == [], f"{name}: " + "; ".join(problems[:5])
        checked += 1
    assert checked == 13
