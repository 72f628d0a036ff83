"""The clinic overview's model results that the clinic database keeps per data set version.

The overview states two results fitted on every row it shows: the therapists' share of the
symptom variance (a three-level REML model) and the early alliance → outcome result (issue 30).
On a million rows each takes about a second, so they are computed once per data set version and
view of the rows and kept as a few numbers in JSON (:meth:`core.store.ClinicStore.kept_result`):
``store import`` computes them for the supervisor, a page computes what is missing. The signal's
calibration by simulation (0.2 s) is kept the same way, per settings. The sentences are written
from the numbers in the reader's language.

>>> import pandas as pd
>>> d = pd.DataFrame({"patient": ["a"] * 3, "session": [1, 2, 3], "symptoms": [3.0, 2.5, 2.0]})
>>> therapist_share_result(d)
'{"share": null}'
>>> read_therapist_share('{"share": 0.0123}')
0.0123
"""
from __future__ import annotations

import json

import pandas as pd

from core.clinical.indices import therapist_share
from core.reporting.alliance_outcome_report import clinic_figures, for_clinic

#: The results' names in the clinic database (``fitted_models.key`` starts with them).
THERAPIST_SHARE = "therapist_share:{outcome}"
EARLY_ALLIANCE = "early_alliance:1-4"
#: The signal's calibration by simulation for the data set's own expected course fitted with these
#: settings (:func:`core.clinical.signal_json.settings_key`).
CALIBRATION = "calibration:{settings}"


def therapist_share_result(data: pd.DataFrame, outcome: str = "symptoms") -> str:
    """:func:`core.clinical.indices.therapist_share` as JSON: ``{"share": 0.0123}`` (``null``: none)."""
    return json.dumps({"share": therapist_share(data, outcome)})


def read_therapist_share(payload: str) -> float | None:
    """The share kept by :func:`therapist_share_result`."""
    share = json.loads(payload).get("share")
    return None if share is None else float(share)


def early_alliance_result(data: pd.DataFrame) -> str:
    """The early alliance (sessions 1–4) → outcome result's numbers as JSON
    (:func:`core.reporting.alliance_outcome_report.clinic_figures`; ``null`` when it cannot be
    computed, e.g. too few patients)."""
    return json.dumps(clinic_figures(for_clinic(data)))


def read_early_alliance(payload: str) -> dict | None:
    """The numbers kept by :func:`early_alliance_result` (for ``clinic_sentence``), or None."""
    return json.loads(payload)


def calibration_name(settings) -> str:
    """The kept calibration's name for the data set's own course fitted with ``settings``."""
    from core.clinical.signal_json import settings_key

    return CALIBRATION.format(settings=settings_key(settings))


def calibration_result(data: pd.DataFrame, model, settings) -> str:
    """:func:`core.clinical.signal.calibration` (numbers only for a local model) as JSON."""
    from core.clinical.signal import calibration, clean

    return json.dumps(clean(calibration(data, model, settings)), allow_nan=False)


def read_calibration(payload: str) -> dict:
    """The calibration kept by :func:`calibration_result`."""
    return json.loads(payload)


def keep_clinic_results(store, user, dataset: str, version: int, data: pd.DataFrame, measures) -> None:
    """Compute and keep both results of a stored data set version (``data``: the rows
    ``store.load_dataset(user, dataset)`` gives), as the overview asks for them: the command line's
    ``store import`` calls it, so that the first overview after an import reads them."""
    outcome = "symptoms" if "symptoms" in measures else measures[0]
    if "therapist" in data.columns:
        store.kept_result(user, dataset, version, THERAPIST_SHARE.format(outcome=outcome),
                          lambda: therapist_share_result(data, outcome))
    if {"alliance", "symptoms"} <= set(measures):
        store.kept_result(user, dataset, version, EARLY_ALLIANCE, lambda: early_alliance_result(data))
