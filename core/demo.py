"""The built-in demo clinic: simulated, seeded, clearly labelled as demo data.

120 patients of 6 therapists, up to 8 weekly sessions, with dropout. Alliance is the client ANS
mean item score (1–7; ANS study: mean 5.69, SD 0.60), symptoms the OQ-45.2 total (0–180;
clinical cut-off 63/64, reliable change 14 points). Patients differ in their usual alliance and
symptom level; symptoms fall on average by about 2.5 points a session; sessions with alliance
above a patient's own usual level are followed by lower symptoms. No real person's data.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from core.i18n import N_

#: The demo data set's name (its key in every store; shown translated, ui.state.dataset_title).
DEMO_LABEL = N_("Demo clinic (simulated data, not real patients)")
DEMO_SOURCE = "demo_clinic.csv"
THERAPISTS = ("T01 Ana", "T02 Bruno", "T03 Carla", "T04 Diego", "T05 Elena", "T06 Franco")


def demo_clinic(n_patients: int = 120, n_sessions: int = 8, seed: int = 2023) -> pd.DataFrame:
    """Long table ``patient, therapist, session, alliance, symptoms`` (text IDs ``D001`` …)."""
    rng = np.random.default_rng(seed)
    therapist_effect = rng.normal(0, 2.0, len(THERAPISTS))
    rows = []
    for i in range(n_patients):
        t = int(rng.integers(len(THERAPISTS)))
        usual_alliance = float(np.clip(rng.normal(5.69, 0.60), 2.5, 6.9))
        intake = float(np.clip(rng.normal(78, 22) - 9 * (usual_alliance - 5.69) + therapist_effect[t], 15, 160))
        slope = rng.normal(-2.5, 2.0)
        attended = n_sessions if rng.random() > 0.23 else int(rng.integers(1, 4))
        prev_dev = 0.0
        for s in range(1, attended + 1):
            dev = 0.35 * prev_dev + rng.normal(0, 0.40)
            alliance = float(np.clip(usual_alliance + dev, 1, 7))
            symptoms = intake + slope * (s - 1) - 4.0 * prev_dev - 2.0 * dev + rng.normal(0, 5.5)
            rows.append((f"D{i + 1:03d}", THERAPISTS[t], s, round(alliance, 2),
                         int(np.clip(round(symptoms), 0, 180))))
            prev_dev = alliance - usual_alliance
    return pd.DataFrame(rows, columns=["patient", "therapist", "session", "alliance", "symptoms"])


def demo_csv_bytes(**kwargs) -> bytes:
    """The demo clinic as a CSV file, so that it goes through the same reading and validation."""
    return demo_clinic(**kwargs).to_csv(index=False).encode("utf-8")


#: Valid ranges of the demo's measures: ANS mean item score and OQ-45.2 total.
DEMO_RANGES = {"alliance": (1.0, 7.0), "symptoms": (0.0, 180.0)}


def demo_dataset():
    """The demo clinic as a :class:`core.intake.dataset.Dataset`, read and validated by the same
    code as an upload (cached per language: its notes are sentences in the current language)."""
    from core.i18n import get_language

    return _demo_dataset(get_language())


@lru_cache(maxsize=4)
def _demo_dataset(language: str):
    from core.intake.dataset import Dataset
    from core.intake.mapping import ColumnMapping
    from core.intake.reading import read_csv_bytes
    from core.intake.validation import validate_table

    raw = read_csv_bytes(demo_csv_bytes(), source=DEMO_SOURCE)
    mapping = ColumnMapping(patient="patient", therapist="therapist", session="session",
                            alliance="alliance", symptoms="symptoms")
    validated = validate_table(raw, mapping, ranges=DEMO_RANGES)
    return Dataset(name=DEMO_LABEL, validated=validated, is_demo=True,
                   instruments=(("alliance", "ans"), ("symptoms", "oq45")))
