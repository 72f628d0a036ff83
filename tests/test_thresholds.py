"""Threshold ties (issue 12): a score exactly at a limit falls where the definitions say, whatever
the rounding of the last binary digits (core.clinical.indices, relative tolerance 1e-9)."""
import numpy as np
import pandas as pd
import pytest

from core.clinical.indices import (
    at_least,
    below,
    caseload,
    flag_ruptures,
    jacobson_truax_status,
    patient_sessions,
)


def test_alliance_exactly_one_sd_below_is_not_a_rupture():
    # mean 3, SD computed as 1.9999999999999998: 1 is exactly one SD below, not more
    d = pd.DataFrame({"patient": "A", "session": [1, 2, 3, 4, 5], "alliance": [5, 5, 3, 1, 1.0]})
    s = patient_sessions(d, ["alliance"])
    assert s["alliance_sd"].iloc[0] != 2.0  # the rounding the tolerance is for
    assert not flag_ruptures(s)["rupture"].any()
    d.loc[4, "alliance"] = 0.99  # clearly more than one SD below
    assert flag_ruptures(patient_sessions(d, ["alliance"]))["rupture"].tolist()[4]


def test_change_of_exactly_the_reliable_change_is_reliable_on_the_mean_item_scale():
    firsts = np.arange(14, 181) / 45  # OQ-45 totals 14..180 as mean item scores
    lasts = firsts - 14 / 45
    statuses = [jacobson_truax_status(f, la, 14 / 45) for f, la in zip(firsts, lasts)]
    assert statuses.count("unchanged") == 0 and set(statuses) == {"improved"}
    worse = [jacobson_truax_status(la, f, 14 / 45) for f, la in zip(firsts, lasts)]
    assert set(worse) == {"deteriorated"}
    assert jacobson_truax_status(1.0, 1.0 - 14 / 45 * (1 - 1e-6), 14 / 45) == "unchanged"


def test_score_exactly_at_the_cutoff_is_non_clinical():
    cut = 63.5 / 45
    assert jacobson_truax_status(100 / 45, 63.5 / 45, 14 / 45, cut) == "recovered"
    assert jacobson_truax_status(cut, cut - 20 / 45, 14 / 45, cut) == "improved"  # started at the cut-off


def test_caseload_uses_the_same_ties_and_skips_blank_scores():
    firsts = np.arange(20, 60) / 45
    rows = []
    for i, f in enumerate(firsts):
        rows += [{"patient": f"P{i:02d}", "session": 1, "symptoms": f},
                 {"patient": f"P{i:02d}", "session": 2, "symptoms": np.nan},
                 {"patient": f"P{i:02d}", "session": 3, "symptoms": f - 14 / 45}]
    rows += [{"patient": "Q", "session": 1, "symptoms": 1.0}, {"patient": "Q", "session": 2, "symptoms": np.nan}]
    table = caseload(pd.DataFrame(rows), reliable_change=14 / 45, cutoff=None, alliance=None).set_index("patient")
    assert (table.drop(index="Q")["status"] == "improved").all()
    assert table.loc["Q", "status"] == "unknown"  # one symptom score only


@pytest.mark.parametrize("x, limit, ge, lt", [(1.0, 1.0000000000000002, True, False), (0.999, 1.0, False, True),
                                              (0.0, 0.0, True, False), (np.nan, 1.0, False, False)])
def test_comparison_helpers(x, limit, ge, lt):
    assert bool(at_least(x, limit)) is ge and bool(below(x, limit)) is lt


def test_ruptures_so_far_treat_ties_as_the_full_course_does():
    """[5, 5, 3, 1, 1]: at session 5 the SD so far is 2 (a grouped SD gives 1.9999999999999998, running
    sums exactly 2.0); 1 is exactly one SD below the mean so far (3), so not a rupture, as with the
    full-course decomposition. ``below`` treats a limit one ulp off as a tie (test_comparison_helpers)."""
    import pandas as pd

    from core.clinical.indices import flag_ruptures_so_far

    d = pd.DataFrame({"patient": "A", "session": [1, 2, 3, 4, 5], "alliance": [5.0, 5.0, 3.0, 1.0, 1.0]})
    flags = flag_ruptures_so_far(d)
    assert flags["alliance_sd_so_far"].iloc[4] == pytest.approx(2.0, abs=1e-12)
    assert not flags.loc[flags["session"] == 5, "rupture"].item()
