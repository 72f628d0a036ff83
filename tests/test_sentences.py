"""Plain-language sentences for fixed effects (issue 18): grammar in both directions, an effect that
rounds to zero, and the pooled summary's intervals written out in full."""
from types import SimpleNamespace

import pandas as pd

from core.reporting.tables import describe_effect, pooled_summary_table
from core.stats.meta import pool_effects


def _model(outcome="symptoms", predictor="alliance", fixed=("intercept", "between", "within"), slope=None):
    spec = SimpleNamespace(outcome=outcome, predictor=predictor, fixed=fixed, random_slope=slope, labels=())
    return SimpleNamespace(spec=spec)


def _row(estimate, low=-0.5, high=0.4, p=0.42):
    return {"estimate": estimate, "ci_low": low, "ci_high": high, "p": p}


def test_reverse_direction_reads_as_english():
    m = _model(outcome="alliance", predictor="symptoms", fixed=("intercept", "between", "within", "time"))
    between = describe_effect("between", _row(-0.05), m)
    within = describe_effect("within", _row(0.02), m)
    assert between == ("Patients whose average symptom score was one point higher had alliance scores 0.05 points "
                       "lower (95% CI −0.50 to 0.40; p = .420).")
    assert within.startswith("In sessions where the symptom score was one point above the patient's own average, "
                             "the alliance score was 0.02 points higher")
    intercept = describe_effect("intercept", _row(5.7, 5.5, 5.9, 0.0001), m)
    assert intercept.startswith("For a patient with an average symptom score, in a session at their own average and "
                                "at the first session, the expected alliance score was 5.70")
    assert "p < .001" in intercept
    assert describe_effect("time", _row(0.031), m).startswith(
        "Controlling for the symptom score, with each further session the alliance score changed by +0.03 points")
    for text in (between, within, intercept):
        assert "symptoms was" not in text and "average symptoms" not in text


def test_an_effect_that_rounds_to_zero_is_not_written_as_zero_points():
    m = _model()
    tiny = describe_effect("between", _row(-0.0031), m)
    assert "0.00 points" not in tiny
    assert "had symptom scores 0.0031 points lower" in tiny
    assert "0.00 points" not in describe_effect("within", _row(0.0004), m)
    assert "0.0004 points higher" in describe_effect("within", _row(0.0004), m)
    assert "changed by −0.0021 points" in describe_effect("time", _row(-0.0021), _model(fixed=("intercept", "time")))
    same = describe_effect("between", _row(0.0), m)
    assert same.startswith("Patients whose average alliance score was one point higher had the same symptom scores (")
    # a varying slope is said so, in the same sentence
    varies = describe_effect("within", _row(-0.2), _model(slope="within"))
    assert "0.20 points lower on average (the effect varies between patients) (95% CI" in varies


def test_covariates_and_interactions_are_whole_sentences():
    m = _model(fixed=("intercept", "between", "within", "between:within", "age"))
    m.spec.labels = (("age", "Age (years)"),)
    assert describe_effect("age", _row(-0.4), m).startswith("Age (years): a difference of −0.40 points in the symptom "
                                                            "score (95% CI")
    assert "was 0.12 points more positive" in describe_effect("between:within", _row(0.12), m)


def test_pooled_summary_writes_every_interval_in_full():
    d = pd.read_csv("tests/data/pool_bcg.csv")
    result = pool_effects(d["estimate"], d["se"], labels=d["study"].tolist())
    table = pooled_summary_table(result).set_index("quantity")["value"]
    assert table["95% confidence interval"] == f"{result.ci_low:.3f} to {result.ci_high:.3f}".replace("-", "−")
    assert table["95% prediction interval (a new study's true effect)"] == \
        f"{result.pi_low:.3f} to {result.pi_high:.3f}".replace("-", "−")
    assert table["τ² (between-study variance)"] == f"{result.tau2:.4f}"
    assert table["I² (share of variation between studies)"] == f"{result.i2:.1f}%"
    assert table["Studies"] == str(len(d)) and table["Method"] == "REML"
    assert table["Cochran's Q"].startswith(f"{result.q:.2f} (df = {len(d) - 1}; p ")
