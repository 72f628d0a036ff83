"""`python -m core power`: the contract's keys, the same numbers as core.stats.power with the same
seed (also on every core), progress on stderr, and exit 2 with one sentence on bad input."""
import json
import subprocess
import sys

import pytest

from core.stats.power import power_analysis
from core.stats.power_run import LocalRunner
from tests.power_cases import DATA, HYBRID, ROOT, paperlike

ROLES = ["--patient", "patient", "--session", "session", "--alliance", "alliance", "--symptoms", "symptoms",
         "--therapist", "therapist"]


def run(*args):
    cmd = [sys.executable, "-m", "core", "power", str(DATA), *ROLES, *map(str, args)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_power_report(tmp_path):
    out = tmp_path / "power.json"
    done = run("--formula", HYBRID, "--term", "alliance_within", "--effect", "-0.05", "--patients", "48,96",
               "--nsim", 10, "--seed", 4, "--out", out)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the report"))
    assert report["term"] == "alliance_within" and report["effect"] == -0.05 and report["alpha"] == 0.05
    assert report["observed"] == pytest.approx(-0.0068189, abs=1e-6)
    assert report["excluded_rows"] == [] and report["warnings"] == []
    assert "power: 20 of 20 simulations" in done.stderr  # progress, then done
    same = power_analysis(paperlike(), HYBRID, "alliance_within", effect=-0.05, patients=[48, 96], nsim=10,
                          seed=4, runner=LocalRunner(1)).report()
    assert report["power"] == same["power"]  # every core (the CLI's default) = one process
    for point in report["power"].values():
        assert {"power", "ci_low", "ci_high", "nsim", "n_failed"} <= set(point)
        assert isinstance(point["nsim"], int) and isinstance(point["n_failed"], int)


def test_observed_power_default_and_quiet():
    done = run("--formula", HYBRID, "--term", "alliance_between", "--patients", "30", "--nsim", 2, "--workers", 1,
               "--quiet")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["effect"] == report["observed"]
    assert "Hoenig" in report["warnings"][0]
    assert done.stderr == ""


@pytest.mark.parametrize("args,message", [
    (["--formula", HYBRID, "--term", "time"], "no fixed effect 'time'"),
    (["--formula", "symptoms ~ nothing + (1 | patient)", "--term", "nothing"], "'nothing'"),
    (["--formula", HYBRID, "--term", "alliance_within", "--patients", "48,many"], "--patients '48,many'"),
    (["--formula", HYBRID, "--term", "alliance_within", "--patients", "1"], "at least 2 patients"),
    (["--formula", HYBRID, "--term", "alliance_within", "--nsim", "0"], "--nsim must be at least 1"),
])
def test_bad_input_exits_2_with_a_sentence(args, message):
    done = run(*args, "--nsim" if "--nsim" not in args else "--seed", 2, "--workers", 1)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
