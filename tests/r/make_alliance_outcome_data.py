"""Generate tests/data/alliance_outcome_multistudy.csv: 6 simulated studies for the early alliance →
post-treatment outcome analysis (issue 30). Seeded; run from the repository root:

    .venv/bin/python tests/r/make_alliance_outcome_data.py

Per patient: a latent alliance level and an intake score; alliance observed in sessions 1–8 (some missed,
some patients drop out early), symptoms falling from the intake, faster with a better alliance; a
post-treatment score (`post`, repeated on each of the patient's rows; blank for about 8% of patients);
a study-level `setting` and `year`. The R reference is tests/r/alliance_outcome_reference.R.
"""
import numpy as np
import pandas as pd

rng = np.random.default_rng(30)
rows = []
studies = {"A": (60, "outpatient", 2011), "B": (45, "inpatient", 2014), "C": (80, "outpatient", 2016),
           "D": (35, "outpatient", 2018), "E": (55, "inpatient", 2020), "F": (70, "outpatient", 2022)}
for study, (n, setting, year) in studies.items():
    effect = rng.normal(-0.3, 0.25)
    for i in range(n):
        patient = f"{study}{i:03d}"
        level = rng.normal(5.0, 0.8)
        intake = rng.normal(75, 15)
        n_sessions = int(rng.integers(3, 9))
        post = intake - 20 + effect * 25 * (level - 5.0) / 0.8 + rng.normal(0, 12)
        has_post = rng.random() > 0.08
        for session in range(1, n_sessions + 1):
            if session > 1 and rng.random() < 0.1:
                continue  # a missed session
            alliance = round(float(np.clip(level + rng.normal(0, 0.5), 1, 7)), 2)
            symptoms = round(float(intake - (intake - post) * (session - 1) / 8 + rng.normal(0, 5)), 1)
            if session == 1 and rng.random() < 0.04:
                alliance = None  # no alliance at the first session
            rows.append({"study": study, "patient": patient, "session": session, "alliance": alliance,
                         "symptoms": symptoms, "post": round(float(post), 1) if has_post else None,
                         "setting": setting, "year": year})
pd.DataFrame(rows).to_csv("tests/data/alliance_outcome_multistudy.csv", index=False)
