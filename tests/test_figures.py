"""Figures built in core (shared by pages and reports)."""
import pandas as pd

from core.figures import forest_plot
from core.meta import pool_effects


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
