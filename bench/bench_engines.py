"""Why ``mixedlm`` fits the models: statsmodels MixedLM and mixedlm against lme4/lmerTest.

On the 5,350-patient data of ``bench_models.py`` (``multi_study(n_studies=17, total=5350,
seed=7)``, 34,119 rows, ``time``/``between``/``within`` computed by
``core.stats.decomposition.add_model_terms`` and written to ``bench/out/engines_5350.csv`` so that every
engine reads the same numbers), two models of the ladder are fitted by REML:

- ``hybrid``: ``symptoms ~ between + within + (1 | patient)`` (random intercept);
- ``time``:   ``symptoms ~ time + (time | patient)`` (correlated random intercept and slope),

with

- statsmodels ``smf.mixedlm("symptoms ~ ...", data, groups=data["patient"], re_formula="~time")``
  ``.fit(reml=True)`` (its default optimizers: bfgs, then lbfgs, then cg);
- mixedlm ``mixedlm.lmer("symptoms ~ ... + (... | patient)", data, REML=True)``, plus its
  Satterthwaite df (``tidy(ddf_method="Satterthwaite")``, as ``core.stats.models`` does);
- R: ``lme4::lmer`` (fit only) and ``lmerTest::lmer`` + ``summary`` (fit + Satterthwaite df), if
  ``Rscript`` with lme4 and lmerTest is available; without R the engines are compared with each
  other only.

Every Python fit runs in its own process (after a warm-up fit on 200 patients, so first-call
imports are not counted in the fit time) with a time limit on that process (``--timeout``, default
180 s, covering imports, warm-up and fit): a fit that does not finish in time is reported as
"> 180 s" and its process is killed. Estimates, SEs, REML log-likelihoods and variance components are
compared with lme4's. statsmodels reports z-based p-values (normal distribution) and has no
Satterthwaite or Kenward-Roger df.

Then ``core.stats.models.fit_ladder`` (mixedlm) is checked against the three lme4/lmerTest reference
files in ``tests/expected/`` (the test ``tests/test_models.py`` makes, as a readable summary of
the largest deviations).

Run from the repository root: ``python bench/bench_engines.py`` (``--no-r``, ``--timeout S``).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

MODELS = {
    "hybrid": {"fixed": "between + within", "re": "1", "lme4": "symptoms ~ between + within + (1 | patient)"},
    "time": {"fixed": "time", "re": "time", "lme4": "symptoms ~ time + (time | patient)"},
}
ENGINES = ("statsmodels", "mixedlm")

R_SCRIPT = r"""
suppressPackageStartupMessages({library(lme4); library(lmerTest); library(jsonlite)})
a <- commandArgs(TRUE)
d <- read.csv(a[1]); d$patient <- as.character(d$patient)
forms <- list(hybrid = symptoms ~ between + within + (1 | patient), time = symptoms ~ time + (time | patient))
invisible(lme4::lmer(symptoms ~ within + (1 | patient), data = d[d$patient %in% unique(d$patient)[1:200], ]))
out <- list(versions = paste0("R ", R.version$major, ".", R.version$minor, ", lme4 ", packageVersion("lme4"),
                              ", lmerTest ", packageVersion("lmerTest")))
for (nm in names(forms)) {
  t0 <- proc.time()[["elapsed"]]; m0 <- lme4::lmer(forms[[nm]], data = d, REML = TRUE)
  t1 <- proc.time()[["elapsed"]]; m <- lmerTest::lmer(forms[[nm]], data = d, REML = TRUE); s <- summary(m)
  t2 <- proc.time()[["elapsed"]]
  cf <- s$coefficients; nmc <- rownames(cf); nmc[nmc == "(Intercept)"] <- "intercept"
  v <- as.data.frame(VarCorr(m))
  out[[nm]] <- list(seconds = t1 - t0, seconds_with_df = t2 - t1,
    estimate = setNames(as.list(cf[, "Estimate"]), nmc), se = setNames(as.list(cf[, "Std. Error"]), nmc),
    df = setNames(as.list(cf[, "df"]), nmc), p = setNames(as.list(cf[, ncol(cf)]), nmc),
    loglik_reml = as.numeric(logLik(m)), variance = setNames(as.list(v$vcov), paste(v$grp, v$var1, v$var2, sep = ":")),
    converged = is.null(m@optinfo$conv$lme4$messages), warnings = as.list(m@optinfo$conv$lme4$messages))
}
cat(toJSON(out, auto_unbox = TRUE, digits = I(12), na = "null"))
"""
R_VAR_KEYS = {
    "patient:(Intercept):NA": "patient_intercept",
    "patient:time:NA": "patient_slope",
    "patient:(Intercept):time": "patient_intercept_slope_cov",
    "Residual:NA:NA": "residual",
}


# ----------------------------------------------------------------------------------- worker

def _term(name: str) -> str:
    return "intercept" if name in ("(Intercept)", "Intercept") else name


def worker(engine: str, model: str, data_path: str) -> dict:
    """Fit one model with one engine (in a fresh process); the numbers as a dict."""
    import numpy as np
    import pandas as pd

    data = pd.read_csv(data_path)
    data["patient"] = data["patient"].astype(str)
    spec = MODELS[model]
    warm = data[data["patient"].isin(data["patient"].unique()[:200])]
    caught_messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if engine == "statsmodels":
            import statsmodels.formula.api as smf

            def fit(frame):
                kwargs = {"re_formula": "~time"} if spec["re"] == "time" else {}
                return smf.mixedlm(f"symptoms ~ {spec['fixed']}", frame, groups=frame["patient"],
                                   **kwargs).fit(reml=True)

            fit(warm)
            caught.clear()
            start = time.perf_counter()
            res = fit(data)
            seconds = time.perf_counter() - start
            cov = np.asarray(res.cov_re, float)
            variance = {"patient_intercept": cov[0, 0], "residual": float(res.scale)}
            if cov.shape[0] > 1:
                variance.update(patient_slope=cov[1, 1], patient_intercept_slope_cov=cov[0, 1])
            fe = res.fe_params
            out = {
                "seconds": seconds, "seconds_with_df": None,
                "estimate": {_term(k): float(v) for k, v in fe.items()},
                "se": {_term(k): float(res.bse_fe[k]) for k in fe.index},
                "df": None,
                "p": {_term(k): float(res.pvalues[k]) for k in fe.index},
                "loglik_reml": float(res.llf), "variance": variance,
                "converged": bool(res.converged),
                "params_group_var": {k: float(v) for k, v in res.params.items() if k not in fe.index},
            }
        elif engine == "mixedlm":
            import mixedlm

            formula = f"symptoms ~ {spec['fixed']} + ({spec['re']} | patient)"
            mixedlm.lmer(formula, warm, REML=True).tidy(ddf_method="Satterthwaite")
            caught.clear()
            start = time.perf_counter()
            res = mixedlm.lmer(formula, data, REML=True)
            seconds = time.perf_counter() - start
            tidy = res.tidy(ddf_method="Satterthwaite")
            seconds_with_df = time.perf_counter() - start
            tidy = tidy[tidy["effect"] == "fixed"]
            vc = res.VarCorr()
            cov = np.atleast_2d(vc.groups["patient"].cov)
            variance = {"patient_intercept": float(cov[0, 0]), "residual": float(vc.residual)}
            if cov.shape[0] > 1:
                variance.update(patient_slope=float(cov[1, 1]), patient_intercept_slope_cov=float(cov[0, 1]))
            out = {
                "seconds": seconds, "seconds_with_df": seconds_with_df,
                "estimate": {_term(t): float(v) for t, v in zip(tidy["term"], tidy["estimate"])},
                "se": {_term(t): float(v) for t, v in zip(tidy["term"], tidy["std.error"])},
                "df": {_term(t): float(v) for t, v in zip(tidy["term"], tidy["df"])},
                "p": {_term(t): float(v) for t, v in zip(tidy["term"], tidy["p.value"])},
                "loglik_reml": float(res.logLik().value), "variance": variance,
                "converged": bool(res.converged),
            }
        else:
            raise ValueError(engine)
        caught_messages = [f"{w.category.__name__}: {w.message}" for w in caught]
    out["warnings"] = list(dict.fromkeys(m.splitlines()[0][:160] for m in caught_messages))
    return out


# ----------------------------------------------------------------------------------- parent

def engine_data() -> Path:
    """The 5,350-patient data with time/between/within (core's definitions), in bench/out/."""
    import pandas as pd
    from bench_models import dataset

    from core.stats.decomposition import add_model_terms

    path = OUT / "engines_5350.csv"
    source = dataset("5350")
    if not path.exists() or path.stat().st_mtime < source.stat().st_mtime:
        frame = pd.read_csv(source)
        frame["patient"] = frame["patient"].astype(str)
        terms = add_model_terms(frame, predictor="alliance")
        terms[["patient", "session", "symptoms", "time", "between", "within"]].to_csv(path, index=False)
    return path


def run_worker(engine: str, model: str, data: Path, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", engine, model, str(data)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"timeout": timeout}
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1], "process_seconds": time.perf_counter() - start}
    return json.loads(proc.stdout)


def run_r(data: Path) -> dict | None:
    if not shutil.which("Rscript"):
        print("R: Rscript not found; the engines are compared with each other only.")
        return None
    script = OUT / "bench_engines.R"
    script.write_text(R_SCRIPT)
    proc = subprocess.run(["Rscript", str(script), str(data)], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        print(f"R failed ({(proc.stderr.strip().splitlines() or ['?'])[-1]}); the engines are compared "
              "with each other only.")
        return None
    result = json.loads(proc.stdout)
    for model in MODELS:
        result[model]["variance"] = {R_VAR_KEYS.get(k, k): v for k, v in result[model]["variance"].items()}
    return result


def deviations(res: dict, ref: dict) -> dict:
    """Largest deviations of one engine's fit from the reference fit."""
    terms = ref["estimate"].keys()
    out = {
        "estimate_in_se": max(abs(res["estimate"][t] - ref["estimate"][t]) / ref["se"][t] for t in terms),
        "se_rel": max(abs(res["se"][t] / ref["se"][t] - 1) for t in terms),
        "loglik": res["loglik_reml"] - ref["loglik_reml"],
        "variance_rel": max(abs(res["variance"][k] - v) / max(abs(v), 1e-12) for k, v in ref["variance"].items()
                            if k in res["variance"]),
    }
    out["df_rel"] = (max(abs(res["df"][t] / ref["df"][t] - 1) for t in terms)
                     if res.get("df") and ref.get("df") else None)
    return out


def fmt_seconds(res: dict, timeout: float) -> str:
    if "timeout" in res:
        return f"> {timeout:.0f} s"
    if "error" in res:
        return "failed"
    return f"{res['seconds']:.2f} s"


def print_table(results: dict, ref_name: str, timeout: float) -> list[str]:
    """The comparison table (also returned as Markdown rows for the README)."""
    header = (f"{'model':<7} {'engine':<12} {'fit':>9} {'+df':>8} {'max|dEst|/SE':>13} {'max|dSE|/SE':>12} "
              f"{'max|ddf|/df':>12} {'d var rel':>10} {'d loglik':>10}  notes")
    print(header)
    print("-" * len(header))
    md = []
    for model in MODELS:
        ref = results[model].get(ref_name)
        for engine, res in results[model].items():
            if "timeout" in res or "error" in res:
                why = "time limit" if "timeout" in res else res["error"]
                print(f"{model:<7} {engine:<12} {fmt_seconds(res, timeout):>9} {'':>8} {'':>13} {'':>12} {'':>12} "
                      f"{'':>10} {'':>10}  {why}")
                md.append(f"| {model} | {engine} | {fmt_seconds(res, timeout)} | | | | | | | {why} |")
                continue
            with_df = f"{res['seconds_with_df']:.2f} s" if res.get("seconds_with_df") is not None else "n/a"
            notes = []
            if engine == "statsmodels":
                notes.append("z-based p, no df")
            if not res.get("converged", True):
                notes.append("NOT converged")
            if res.get("warnings"):
                notes.append(f"{len(res['warnings'])} warning(s): {res['warnings'][0][:70]}")
            if ref is not None and engine != ref_name and "estimate" in ref:
                d = deviations(res, ref)
                df_text = f"{d['df_rel']:.1e}" if d["df_rel"] is not None else "n/a"
                cells = [f"{d['estimate_in_se']:.1e}", f"{d['se_rel']:.1e}", df_text,
                         f"{d['variance_rel']:.1e}", f"{d['loglik']:+.1e}"]
            else:
                cells = ["(ref)"] * 5 if engine == ref_name else ["-"] * 5
            print(f"{model:<7} {engine:<12} {fmt_seconds(res, timeout):>9} {with_df:>8} {cells[0]:>13} {cells[1]:>12} "
                  f"{cells[2]:>12} {cells[3]:>10} {cells[4]:>10}  {'; '.join(notes)}")
            md.append(f"| {model} | {engine} | {fmt_seconds(res, timeout)} | {with_df} | " + " | ".join(cells)
                      + f" | {'; '.join(notes)} |")
    return md


def reference_files() -> bool:
    """core.stats.models.fit_ladder against tests/expected/*.json (lme4 1.1-31 / lmerTest 3.1-3);
    True when every file is within the tolerances of tests/test_models.py."""
    from bench_models import compare, format_comparison, within_tolerance

    from core.intake.mapping import ColumnMapping
    from core.intake.reading import read_table
    from core.intake.validation import validate_table
    from core.reporting.json_report import clean, model_to_dict
    from core.stats.models import fit_ladder

    full = ColumnMapping(patient="patient", session="session", symptoms="symptoms", alliance="alliance",
                         therapist="therapist")
    cases = {
        "paperlike_public": ("paperlike_public.csv", full),
        "multistudy_public_ladder": ("multistudy_public.csv", full),
        "sleepstudy": ("sleepstudy.csv", ColumnMapping(patient="Subject", session="Days", symptoms="Reaction")),
    }
    all_ok = True
    print("\ncore.stats.models.fit_ladder (mixedlm) against tests/expected/ (lme4 1.1-31, lmerTest 3.1-3):")
    for name, (filename, mapping) in cases.items():
        validated = validate_table(read_table(ROOT / "tests" / "data" / filename), mapping)
        start = time.perf_counter()
        ladder = fit_ladder(validated.data)
        seconds = time.perf_counter() - start
        ours = clean({
            "n_observations": ladder.n_observations, "n_patients": ladder.n_patients,
            "models": {k: model_to_dict(m) for k, m in ladder.models.items()},
            "icc": ladder.icc,
            "comparisons": {k: {"chisq": c.chisq, "df": c.df} for k, c in ladder.comparisons.items()},
        })
        ref = json.loads((ROOT / "tests" / "expected" / f"{name}.json").read_text())
        worst = compare(ours, ref)
        ok = within_tolerance(worst)
        all_ok &= ok
        verdict = "all within the tests' tolerances" if ok else "OUTSIDE TOLERANCE"
        print(f"  {name}: {ladder.n_patients} patients, {ladder.n_observations} rows, "
              f"{len(ladder.models)} models in {seconds:.2f} s; {verdict}")
        print("\n".join(format_comparison(worst, indent="    ")))
    return all_ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=180.0, help="time limit per Python fit (seconds)")
    ap.add_argument("--no-r", action="store_true", help="do not run R")
    ap.add_argument("--worker", nargs=3, metavar=("ENGINE", "MODEL", "DATA"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        engine, model, data = args.worker
        print(json.dumps(worker(engine, model, data)))
        return 0

    from importlib.metadata import version

    import mixedlm  # noqa: F401
    import statsmodels

    print(f"bench_engines: {datetime.datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}; "
          f"statsmodels {statsmodels.__version__}, mixedlm {version('mixedlm')}")
    data = engine_data()
    print(f"data: {data.relative_to(ROOT)} (5,350 patients, multi_study seed 7; time/between/within "
          "from core.stats.decomposition)")
    results: dict[str, dict[str, dict]] = {m: {} for m in MODELS}
    r = None if args.no_r else run_r(data)
    for model in MODELS:
        for engine in ENGINES:
            results[model][engine] = run_worker(engine, model, data, args.timeout)
        if r is not None:
            results[model]["lme4"] = r[model]
    ref_name = "lme4" if r is not None else "mixedlm"
    print(f"\nREML fits, one process each; 'fit' = the fit alone, '+df' = fit plus Satterthwaite df; "
          f"deviations from {ref_name + ' (' + r['versions'] + ')' if r else 'mixedlm'}"
          f" (d loglik: REML log-likelihood minus the reference's)\n")
    print_table(results, ref_name, args.timeout)
    for model in MODELS:
        sm = results[model]["statsmodels"]
        if "params_group_var" in sm:
            print(f"  statsmodels {model}: result.params holds the random-effect (co)variances divided by the "
                  f"residual variance: {', '.join(f'{k} {v:.4g}' for k, v in sm['params_group_var'].items())} "
                  f"(cov_re[0,0] = {sm['variance']['patient_intercept']:.4g}, scale = {sm['variance']['residual']:.4g})")
        for engine, res in results[model].items():
            for w in res.get("warnings") or []:
                print(f"  {engine} {model} warning: {w}")
    return 0 if reference_files() else 1


if __name__ == "__main__":
    sys.exit(main())
