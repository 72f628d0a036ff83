"""The benchmarks' simulated data.

- :func:`load_simulator`: ``tests/data/simulate_reference.py`` imported from its path (``tests/data``
  is not a package): ``simulate`` and ``multi_study``, one Python loop step per row.
- :func:`simulate_vectorised`: the same model as ``simulate_reference.simulate`` (patients nested in
  therapists, stable between-patient differences, a linear time trend with random slopes,
  contemporaneous within-patient coupling, lagged reciprocal effects, dropout), drawn with NumPy one
  session at a time for all patients at once, so that 1.4 million patients (9.8 million rows) take
  seconds instead of hours. The random numbers are drawn in another order than the row-by-row
  simulator, so the two give different samples of the same model.
- :func:`write_csv`: a large simulated table to CSV with pyarrow (pandas' ``to_csv`` takes minutes
  on 10 million rows).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def load_simulator():
    """The module ``tests/data/simulate_reference.py`` (``simulate``, ``multi_study``)."""
    path = ROOT / "tests" / "data" / "simulate_reference.py"
    spec = importlib.util.spec_from_file_location("simulate_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def simulate_vectorised(n_patients=1_400_000, n_therapists=7_000, n_sessions=8, seed=19,
                        mu_a=5.69, sd_a=0.60, mu_s=1.70, sd_s=0.40, between=-0.23,
                        within=-0.10, slope=-0.06, sd_slope=0.03, sd_therapist=0.03,
                        phi_a=0.3, phi_s=0.3, lag_as=-0.08, lag_sa=-0.10,
                        sd_wa=0.40, sd_ws=0.18, dropout=0.25):
    """Long data ``patient, therapist, session, alliance, symptoms`` from the model of
    ``simulate_reference.simulate`` (same parameters and defaults except the size and dropout).

    A dropout leaves after 1 … ``n_sessions`` − 1 sessions (uniform), the others attend all
    sessions: with 8 sessions and 25% dropout a patient attends 7 sessions on average, so the
    default 1.4 million patients give about 9.8 million rows. IDs: ``P0000001`` …, ``T0001`` ….
    Rows are ordered by patient, then session. Returns a dict of NumPy arrays (a 10-million-row
    pandas frame of Python strings would cost gigabytes).
    """
    rng = np.random.default_rng(seed)
    therapist = rng.integers(0, n_therapists, n_patients)
    t_eff = rng.normal(0, sd_therapist, n_therapists)
    A = rng.normal(mu_a, sd_a, n_patients)
    S = mu_s + between * (A - mu_a) + rng.normal(0, sd_s, n_patients) + t_eff[therapist]
    b1 = rng.normal(slope, sd_slope, n_patients)
    n_att = np.full(n_patients, n_sessions)
    drop = rng.random(n_patients) < dropout
    n_att[drop] = rng.integers(1, n_sessions, int(drop.sum()))
    alliance = np.full((n_sessions, n_patients), np.nan)
    symptoms = np.full((n_sessions, n_patients), np.nan)
    wa_prev = np.zeros(n_patients)
    ws_prev = np.zeros(n_patients)
    for t in range(1, n_sessions + 1):
        wa = phi_a * wa_prev + lag_sa * ws_prev / max(sd_ws, 1e-9) * sd_wa * 0.5 + rng.normal(0, sd_wa, n_patients)
        ws = phi_s * ws_prev + lag_as * wa_prev + within * wa + rng.normal(0, sd_ws, n_patients)
        alliance[t - 1] = np.clip(A + wa, 1, 7)
        symptoms[t - 1] = np.clip(S + b1 * (t - 1) + ws, 0, 4)
        wa_prev, ws_prev = wa, ws
    # rows by patient, then session: the (session, patient) grids transposed, attended sessions only
    attended = (np.arange(1, n_sessions + 1)[None, :] <= n_att[:, None])
    patient_idx = np.repeat(np.arange(n_patients), n_att)
    session = np.tile(np.arange(1, n_sessions + 1), n_patients)[attended.ravel()]
    return {
        "patient": patient_idx,
        "therapist": therapist[patient_idx],
        "session": session,
        "alliance": np.round(alliance.T[attended], 3),
        "symptoms": np.round(symptoms.T[attended], 3),
    }


def write_csv(table: dict, path: Path, chunk_rows: int = 1_000_000) -> int:
    """Write :func:`simulate_vectorised`'s table as CSV (``patient,therapist,session,alliance,symptoms``,
    IDs as ``P0000001`` and ``T0001``) with pyarrow, in pieces; returns the number of rows."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    n = len(table["patient"])
    width_p = max(7, len(str(int(table["patient"].max()) + 1)))
    width_t = max(4, len(str(int(table["therapist"].max()) + 1)))

    def ids(values, prefix, width):
        text = pc.cast(pa.array(values + 1), pa.string())
        return pc.binary_join_element_wise(prefix, pc.utf8_lpad(text, width, "0"), "")

    tmp = Path(path).with_suffix(".tmp")
    schema = pa.schema([("patient", pa.string()), ("therapist", pa.string()), ("session", pa.int64()),
                        ("alliance", pa.float64()), ("symptoms", pa.float64())])
    with pacsv.CSVWriter(str(tmp), schema, write_options=pacsv.WriteOptions(quoting_style="none")) as writer:
        for start in range(0, n, chunk_rows):
            part = slice(start, start + chunk_rows)
            batch = pa.record_batch([
                ids(table["patient"][part], "P", width_p), ids(table["therapist"][part], "T", width_t),
                pa.array(table["session"][part]), pa.array(table["alliance"][part]),
                pa.array(table["symptoms"][part])], schema=schema)
            writer.write_batch(batch)
    tmp.replace(path)
    return n
