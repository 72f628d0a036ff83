"""Figures built in core (shared by pages and reports)."""
import numpy as np
import pandas as pd

from core.reporting.figures import forest_plot
from core.stats.meta import pool_effects


def test_forest_plot_has_studies_pooled_diamond_and_prediction_interval():
    d = pd.read_csv("tests/data/pool_bcg.csv")
    result = pool_effects(d["estimate"], d["se"], labels=d["study"].tolist())
    fig = forest_plot(result, effect_label="log RR")
    studies, diamond, pi = fig.data
    assert list(studies.x) == list(d["estimate"])
    # squares sized by weight: the heaviest study gets the largest square
    assert studies.marker.size.argmax() == result.studies["weight"].to_numpy().argmax()
    assert max(diamond.x) == result.ci_high and min(diamond.x) == result.ci_low
    assert list(pi.x) == [result.pi_low, result.pi_high]
    assert "Pooled (random effects)" in fig.layout.yaxis.ticktext


def test_forest_plot_without_heterogeneity():
    result = pool_effects([0.1, 0.1, 0.1], [0.05, 0.06, 0.07], labels=["a", "b", "c"])
    fig = forest_plot(result)
    assert result.tau2 == 0 and result.i2 == 0
    assert len(fig.data) == 3


def _trajectories(n_therapists: int):
    from core.clinical.indices import therapist_trajectories

    rows = [{"therapist": f"T{t:03d}", "patient": f"P{t}-{p}", "session": s, "symptoms": 50 + t + s + p}
            for t in range(n_therapists) for p in range(1 + t % 3) for s in (1, 2, 3)]
    return therapist_trajectories(pd.DataFrame(rows), "symptoms")


def test_therapist_trajectory_figure_draws_band_and_line_per_therapist():
    from core.reporting.figures import therapist_trajectory_figure

    fig = therapist_trajectory_figure(_trajectories(3), "symptoms")
    lines = [t for t in fig.data if t.showlegend is not False]
    assert [t.name for t in lines] == ["T000", "T001", "T002"]
    assert len(fig.data) == 6
    assert "per therapist" in fig.layout.title.text and "of" not in fig.layout.title.text.split("(95% CI)")[1]


def test_therapist_trajectory_figure_keeps_the_busiest_therapists_and_says_so():
    from core.reporting.figures import therapist_trajectory_figure

    traj = _trajectories(40)  # T002, T005, … have 3 patients each, the most
    fig = therapist_trajectory_figure(traj, "symptoms", max_therapists=12)
    names = [t.name for t in fig.data if t.showlegend is not False]
    assert len(names) == 12 and all(int(n[1:]) % 3 == 2 for n in names)
    assert "12 therapists with the most sessions of 40" in fig.layout.title.text


def test_small_multiples_one_panel_per_patient_in_order_with_shared_axes():
    from core.reporting.figures import small_multiples

    rows = [{"patient": f"P{p}", "session": s, "symptoms": 60.0 + p + s} for p in range(8) for s in (1, 2, 3)]
    data = pd.DataFrame(rows)
    order = ["P7", "P0", "P3", "P5", "P1", "P2", "P6"]  # P4 is not on this page
    fig = small_multiples(data, order, "symptoms", cutoff=63.5, columns=3)
    assert [t.name for t in fig.data] == order
    assert [a.text for a in fig.layout.annotations][:7] == order
    assert "Session" in [a.text for a in fig.layout.annotations]
    assert list(fig.data[0].y) == [68.0, 69.0, 70.0] and fig.data[0].xaxis == "x" and fig.data[1].yaxis == "y2"
    assert fig.layout.yaxis3.matches == "y" and fig.layout.xaxis7.matches == "x"
    assert len(fig.layout.shapes) == 7 and fig.layout.shapes[0].y0 == 63.5
    assert fig.layout.height == 140 * 3 + 90  # 7 panels in 3 columns: 3 rows
    d1, d4 = fig.layout.yaxis.domain, fig.layout.yaxis4.domain
    assert d1[1] == 1.0 and d4[1] < d1[0]  # row 2 lies below row 1


def test_small_multiples_say_the_status_in_words_symbol_and_colour():
    from core.reporting.figures import STATUS_STYLE, small_multiples

    rows = [{"patient": f"P{p}", "session": s, "symptoms": float(60 + p + s)} for p in range(3) for s in (1, 2, 3)]
    fig = small_multiples(pd.DataFrame(rows), ["P0", "P1", "P2"], "symptoms", cutoff=63.5,
                          status={"P0": "not_on_track", "P1": "on_track"},
                          y_title="OQ-45.2 total (0–180, higher = more symptoms)", y_range=(0, 180))
    titles = [a.text for a in fig.layout.annotations]
    assert titles[:3] == ["P0 ▲", "P1 ●", "P2"]  # short: it fits its panel at 800 px (issue 24)
    assert [a.font.color for a in fig.layout.annotations[:2]] == [STATUS_STYLE["not_on_track"][1],
                                                                   STATUS_STYLE["on_track"][1]]
    assert "▲ not on track" in fig.data[0].hovertemplate and "● on track" in fig.data[1].hovertemplate
    assert fig.data[0].line.color == STATUS_STYLE["not_on_track"][1] != fig.data[1].line.color
    assert any("OQ-45.2 total" in t and a.textangle == -90 for t, a in zip(titles, fig.layout.annotations))
    assert "Dotted line: clinical cut-off (63.5)." in titles
    assert fig.layout.yaxis.range[0] < 0 and fig.layout.yaxis.range[1] > 180  # the full scale, a little padded
    assert "%{y:.0f}" in fig.data[0].hovertemplate  # whole-number scores without decimals


def test_patient_chart_shows_expected_course_band_and_statuses_in_words():
    from core.clinical.indices import flag_ruptures_so_far, patient_sessions
    from core.clinical.signal import SignalSettings, compute_signal
    from core.demo import demo_clinic
    from core.reporting.figures import STATUS_STYLE, patient_chart

    data = demo_clinic()
    signal = compute_signal(data, SignalSettings()).sessions
    mine = flag_ruptures_so_far(patient_sessions(data[data["patient"] == "D017"], ["alliance", "symptoms"]))
    fig = patient_chart(mine, ["alliance", "symptoms"], signal=signal[signal["patient"] == "D017"], cutoff=63.5,
                        labels={"symptoms": ("Symptoms (higher = worse)", "OQ-45.2 total"),
                                "alliance": ("Alliance (higher = better)", "ANS mean item score")})
    by_name = {t.name: t for t in fig.data}
    red = by_name["not on track"]
    assert list(red.x) == [5, 6, 7, 8] and red.marker.symbol == "triangle-up"
    assert red.marker.color == STATUS_STYLE["not_on_track"][1]
    assert list(red.text) == ["not on track", "", "", "not on track"]  # where it changes, and now
    assert list(by_name["at risk"].x) == [4]
    assert "not-on-track bound" in red.customdata[0]
    assert list(by_name["on track"].x) == [2, 3] and by_name["no status"].text[0] == "start"
    expected = by_name["expected course from this starting point"]
    assert expected.x[0] == 1 and expected.y[0] == 124  # the course starts where the patient started
    bound = by_name["not on track beyond this line (given the earlier scores)"]
    assert bound.line.dash == "dot" and len(bound.x) == 8
    shown = signal[signal["patient"] == "D017"].set_index("session")
    np.testing.assert_allclose(np.array(bound.y, float), shown["flag_bound"].to_numpy(float), equal_nan=True)
    # a score beyond the line is not on track; where there is no line the earlier scores decide alone
    red_sessions = set(shown.index[shown["status"] == "not_on_track"])
    assert all(s in red_sessions for s in shown.index[shown["observed"] > shown["flag_bound"]])
    assert list(by_name["rupture"].x) == [6, 8] and list(by_name["rupture"].text) == ["rupture", "rupture"]
    assert by_name["clinical cut-off (63.5)"].y[0] == 63.5
    # symptoms on top, each axis titled with its unit
    assert fig.layout.yaxis.title.text == "OQ-45.2 total" and fig.layout.yaxis2.title.text == "ANS mean item score"
    assert fig.layout.xaxis2.title.text == "Session"


def _d017(details=False, ranges=None):
    from core.clinical.indices import flag_ruptures_so_far, patient_sessions
    from core.clinical.signal import SignalSettings, compute_signal
    from core.demo import demo_clinic
    from core.reporting.figures import patient_chart

    data = demo_clinic()
    signal = compute_signal(data, SignalSettings()).sessions
    mine = flag_ruptures_so_far(patient_sessions(data[data["patient"] == "D017"], ["alliance", "symptoms"]))
    labels = {"symptoms": ("Symptoms (lower is better)", "OQ-45.2 total (0–180, higher = more symptoms)"),
              "alliance": ("Alliance (higher is better)", "Alliance, ANS mean item score (1–7)")}
    return mine, patient_chart(mine, ["alliance", "symptoms"], signal=signal[signal["patient"] == "D017"],
                               cutoff=63.5, labels=labels, details=details, ranges=ranges)


def test_patient_chart_draws_few_layers_by_default_and_the_details_on_request():
    _, plain = _d017()
    _, detailed = _d017(details=True)
    per_panel = {ax: [t.name for t in plain.data if t.yaxis == ax] for ax in ("y", "y2")}
    # symptoms: band, expected course, cut-off, the score line, at most the four statuses; alliance: scores, ruptures
    assert len(per_panel["y"]) <= 8 and "at-risk bound" not in per_panel["y"]
    assert per_panel["y2"] == ["alliance", "rupture"]
    names = {t.name for t in detailed.data}
    assert {"at-risk bound", "own mean so far", "rupture limit so far", "below own mean so far"} <= names
    assert len(detailed.data) > len(plain.data)


def test_patient_chart_alliance_on_the_full_scale_unless_zoomed_and_units_on_the_axes():
    mine, full = _d017(ranges={"alliance": (1, 7)})
    low, high = full.layout.yaxis2.range
    assert low < 1 < 7 < high and high - low < 6.6  # 1–7, a little padded
    _, zoomed = _d017()
    assert zoomed.layout.yaxis2.range is None  # fitted to the patient's scores
    assert full.layout.yaxis.title.text == "OQ-45.2 total (0–180,<br>higher = more symptoms)"
    assert full.layout.yaxis2.title.text == "Alliance, ANS mean<br>item score (1–7)"
    assert full.layout.xaxis2.title.text == "Session"
    # OQ totals are whole numbers: hover without decimals; alliance mean item scores keep two
    red = next(t for t in full.data if t.name == "not on track")
    assert "score %{y:.0f}" in red.hovertemplate
    assert "%{y:.2f}" in next(t for t in full.data if t.name == "alliance").hovertemplate
    # the legend lies below the plot, clear of the "Session" title
    assert full.layout.legend.y < 0 and full.layout.legend.yanchor == "top"


def test_forest_plot_writes_estimate_ci_and_weight_per_study_beside_the_plot():
    d = pd.read_csv("tests/data/pool_bcg.csv")
    result = pool_effects(d["estimate"], d["se"], labels=d["study"].tolist())
    fig = forest_plot(result, effect_label="log RR")
    texts = [a.text for a in fig.layout.annotations]
    first = result.studies.iloc[0]
    low, high = first["estimate"] - 1.96 * first["se"], first["estimate"] + 1.96 * first["se"]
    expected = f"{first['estimate']:.2f} [{low:.2f}, {high:.2f}]".replace("-", "−")
    assert expected in texts and f"{first['weight']:.1f}%" in texts
    assert "<b>Estimate [95% CI]</b>" in texts and "<b>Weight</b>" in texts
    assert sum(t.endswith("%") and "[" not in t for t in texts) == len(d)  # one weight per study
    # squares: area proportional to weight
    size, weight = np.asarray(fig.data[0].marker.size), result.studies["weight"].to_numpy()
    big = size > 6  # the smallest squares stay 6 px wide, to be seen
    assert big.sum() >= len(d) - 2 and size.max() == 24
    assert np.allclose((size[big] / 24) ** 2, (weight / weight.max())[big])
    # the note sits above the plot, clear of the axis title (which moves when tick labels tilt)
    note = next(a for a in fig.layout.annotations if a.text.startswith("Heterogeneity"))
    assert note.yref == "paper" and note.y == 1 and note.yanchor == "bottom" and note.yshift > 0
    assert fig.layout.margin.t >= 40 and fig.layout.margin.r >= 240
