"""Simulated data sets from the project's power simulation, for the R cross-check of one refit.

For each case: the design for N patients (recycled beyond the 96 observed), the outcome of the
first K simulations of seed 7 (``core.stats.power_sim.simulate_one``'s draws), written as
``tests/data/power_refit/<case>.csv`` (the design's model frame, one column ``y<i>`` per simulation).
``Rscript tests/r/reference_power_refit.R`` then refits each ``y<i>`` with lme4 + lmerTest and
writes ``tests/expected/power_refit.json``; tests/test_power.py checks that the project's refit
gives the same estimate, df and p, and that its simulation reproduces these ``y`` exactly.

usage: .venv/bin/python tests/r/make_power_refit_cases.py
"""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.power_cases import REFIT_CASES, paperlike  # noqa: E402
from core.stats.power import prepare, design_frame, design_data, patient_order  # noqa: E402
from core.stats.power_sim import template_model, simulation_rng  # noqa: E402

OUT = ROOT / "tests" / "data" / "power_refit"


def main() -> None:
    data = paperlike()
    cases = {}
    for name, case in REFIT_CASES.items():
        designs, info = prepare(data, case["formula"], case["term"], effect=case["effect"],
                                patients=[case["n"]], seed=case["seed"])
        design = designs[0]
        frame = design_frame(design_data(data, case["n"], patient_order(data)), case["formula"])
        model = template_model(design)
        for i in range(case["k"]):
            frame[f"y{i}"] = model.simulate(seed=simulation_rng(design.seed, design.n_patients, i))
        OUT.mkdir(parents=True, exist_ok=True)
        frame.to_csv(OUT / f"{name}.csv", index=False, float_format="%.17g")
        cases[name] = {"data": f"../data/power_refit/{name}.csv", "formula": case["formula"],
                       "term": info["term"], "k": case["k"]}
    (ROOT / "tests" / "r" / "power_refit_cases.json").write_text(json.dumps(cases, indent=1) + "\n")


if __name__ == "__main__":
    main()
