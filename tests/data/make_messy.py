"""Makes tests/data/paperlike_messy.csv: the paper-like reference data as a researcher's spreadsheet.

From paperlike_public.csv (96 patients, 4 sessions) with, deterministically:
- ``age`` (years, one value per patient) with one blank cell and one ``NA`` text, ``age_months`` =
  12 x age (collinear with age), ``site`` (north/south/east, categorical) with one blank cell,
  ``group`` (CBT/TAU, categorical), ``hours`` (a number with a decimal comma in one cell);
- blank alliance cells in 20 sessions whose symptom score is present, and blank symptom cells in 6
  sessions whose alliance score is present (so no session lacks both; nobody dropped out because of
  a blank cell).

Run: python tests/data/make_messy.py
"""
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent


def main() -> None:
    d = pd.read_csv(HERE / "paperlike_public.csv", dtype={"patient": str, "therapist": str})
    rng = np.random.default_rng(12)
    patients = d["patient"].unique()
    age = dict(zip(patients, rng.integers(18, 70, len(patients))))
    site = dict(zip(patients, rng.choice(["north", "south", "east"], len(patients))))
    group = dict(zip(patients, rng.choice(["CBT", "TAU"], len(patients))))
    d["age"] = d["patient"].map(age).astype(str)
    d["age_months"] = (d["patient"].map(age) * 12).astype(str)
    d["site"] = d["patient"].map(site)
    d["group"] = d["patient"].map(group)
    d["hours"] = np.round(rng.uniform(0.5, 3.0, len(d)), 1).astype(str)
    d.loc[5, "age"] = ""
    d.loc[40, "age"] = "NA"
    d.loc[77, "site"] = ""
    d.loc[90, "hours"] = d.loc[90, "hours"].replace(".", ",")
    blank_alliance = rng.choice(d.index[d["session"] > 1], 20, replace=False)
    d.loc[blank_alliance, "alliance"] = np.nan
    rest = d.index.difference(blank_alliance)
    blank_symptoms = rng.choice(rest, 6, replace=False)
    d.loc[blank_symptoms, "symptoms"] = np.nan
    d.to_csv(HERE / "paperlike_messy.csv", index=False)


if __name__ == "__main__":
    main()
