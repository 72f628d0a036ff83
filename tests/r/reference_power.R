# Simulation-based power as simr computes it, by hand with lme4 + lmerTest (simr itself is not
# packaged in Debian). Adapted from ../shared/reference/tools/reference_power.R so that it runs any
# `fit`-style case (roles, lme4 formula, tested term, effect) and draws the random effects of any
# random-effects structure (intercepts, slopes, several grouping factors), not only a patient
# intercept. The R reference for tests/test_power_reference.py; R is a test oracle only.
#
# Method (the contract's `python -m core power`, docs/cli-and-reports.md):
#  1. Read the file, name the roles, type the columns (numeric when every non-missing value parses
#     as a number, otherwise a factor with sorted levels), derive time = session - min(session) and,
#     for alliance and symptoms, m_between = patient mean - mean of patient means and
#     m_within = m - patient mean (patient means over the sessions where m was observed).
#  2. Rows used = complete cases of the formula's variables (lme4's na.omit). Fit by REML.
#  3. Generating parameters: the REML fixed effects (the tested one set to `effect` when given),
#     theta (relative covariance factor) and sigma.
#  4. Design for N patients: the patients of the rows used, in the order of the file; N <= observed:
#     the first N; N > observed: recycled in that order as new patients (simr's extend along
#     patient). Every row of a chosen patient is copied, the derived variables are recomputed on the
#     design, and the rows used are again the complete cases of the formula's variables.
#  5. Each simulation: b = Lambda(theta) u sigma with u ~ N(0, I) (new random effects for every
#     group of the design, lme4's simulate with use.u = FALSE), y = X beta + Z b + e with
#     e ~ N(0, sigma^2); refit by REML (lmer); lmerTest's Satterthwaite t-test of the term, or with
#     "test": "kr" its Kenward-Roger t-test (pbkrtest; for one coefficient the same p as simr's default
#     KRmodcomp, checked in tests/expected/kr). Singular refits are counted (n_singular).
#     A refit that raises an error counts as failed (simr's failed simulations); warnings do not.
#  6. power = significant / (nsim - failed), with its Clopper-Pearson 95% interval
#     (binom.test, as simr's summary).
#
# usage: Rscript tests/r/reference_power.R CASES.json OUT.json
#   CASES.json: {name: {data, roles: {role: column}, formula, term, effect (or null), sizes, nsim, seed}}
#   (data relative to CASES.json). OUT.json: {name: {term, effect, observed, alpha, formula,
#   seconds_per_simulation, power: {N: {power, ci_low, ci_high, nsim, n_failed}}}}.
suppressPackageStartupMessages({library(lmerTest); library(jsonlite)})
a <- commandArgs(TRUE)
cases <- fromJSON(a[1], simplifyVector = FALSE)
base <- dirname(a[1])
source(file.path(dirname(sub("--file=", "", grep("--file=", commandArgs(FALSE), value = TRUE)[1])), "prepare_case.R"))  # derive()

read_power_case <- function(cs) {
  d <- read.csv(file.path(base, cs$data), colClasses = "character", na.strings = na_strings, check.names = FALSE)
  roles <- cs$roles
  for (r in names(roles)) { col <- roles[[r]]; v <- d[[col]]; d[[col]] <- NULL; d[[r]] <- v }
  for (col in names(d)) {
    if (col %in% c("patient", "therapist")) next
    num <- suppressWarnings(as.numeric(d[[col]]))
    if (all(is.na(num) == is.na(d[[col]]))) d[[col]] <- num else d[[col]] <- factor(d[[col]])
  }
  d
}

used_rows <- function(d, vars) d[complete.cases(d[, vars, drop = FALSE]), , drop = FALSE]

design <- function(d0, ids, n, vars) {
  pick <- rep_len(ids, n)
  rows <- split(seq_len(nrow(d0)), factor(d0$patient, levels = ids))
  parts <- lapply(seq_len(n), function(i) { x <- d0[rows[[pick[i]]], , drop = FALSE]; x$patient <- sprintf("N%06d", i); x })
  used_rows(derive(do.call(rbind, parts)), vars)
}

res <- list()
for (name in names(cases)) {
  cs <- cases[[name]]
  set.seed(if (is.null(cs$seed)) 20261127 else cs$seed)
  d0 <- read_power_case(cs)
  f <- as.formula(cs$formula)
  vars <- all.vars(f)
  used0 <- used_rows(derive(d0), vars)
  ids <- unique(used0$patient)
  d0 <- d0[d0$patient %in% ids, , drop = FALSE]
  fit0 <- lmer(f, data = used0, REML = TRUE)
  beta <- fixef(fit0)
  observed <- unname(beta[cs$term])
  if (!is.null(cs$effect)) beta[cs$term] <- cs$effect
  theta <- getME(fit0, "theta"); sigma <- sigma(fit0)
  alpha <- if (is.null(cs$alpha)) 0.05 else cs$alpha
  out <- list(); seconds <- 0; total <- 0
  for (n in unlist(cs$sizes)) {
    dd <- design(d0, ids, n, vars)
    lf <- lFormula(f, data = dd)
    X <- lf$X; Zt <- lf$reTrms$Zt; Lt <- lf$reTrms$Lambdat; Lt@x <- theta[lf$reTrms$Lind]
    eta <- as.vector(X %*% beta[colnames(X)])
    ZL <- t(Zt) %*% t(Lt)  # Z Lambda
    hits <- 0; fails <- 0; singular <- 0
    ddf <- if (identical(cs$test, "kr")) "Kenward-Roger" else "Satterthwaite"
    t0 <- proc.time()[["elapsed"]]
    for (s in seq_len(cs$nsim)) {
      dd[[all.vars(f)[1]]] <- eta + sigma * as.vector(ZL %*% rnorm(ncol(ZL))) + rnorm(nrow(dd), 0, sigma)
      p <- tryCatch({
        m <- suppressMessages(suppressWarnings(lmer(f, data = dd, REML = TRUE)))
        if (isSingular(m)) singular <- singular + 1
        summary(m, ddf = ddf)$coefficients[cs$term, 5]
      }, error = function(e) NA)
      if (is.na(p)) fails <- fails + 1 else if (p < alpha) hits <- hits + 1
    }
    seconds <- seconds + proc.time()[["elapsed"]] - t0; total <- total + cs$nsim
    ok <- cs$nsim - fails
    ci <- if (ok > 0) binom.test(hits, ok)$conf.int else c(NA, NA)
    out[[as.character(n)]] <- list(power = if (ok > 0) hits / ok else NA, ci_low = ci[1], ci_high = ci[2],
                                   nsim = cs$nsim, n_failed = fails, n_singular = singular, n_observations = nrow(dd),
                                   seconds_per_simulation = (proc.time()[["elapsed"]] - t0) / cs$nsim)
    cat(name, n, hits / ok, fails, sprintf("%.1f ms/sim", 1000 * (proc.time()[["elapsed"]] - t0) / cs$nsim), "\n")
  }
  res[[name]] <- list(test = if (is.null(cs$test)) "satterthwaite" else cs$test, formula = cs$formula, term = cs$term, effect = if (is.null(cs$effect)) observed else cs$effect,
                      observed = observed, alpha = alpha, seconds_per_simulation = seconds / total,
                      r_version = R.version.string, lme4 = as.character(packageVersion("lme4")),
                      lmerTest = as.character(packageVersion("lmerTest")), power = out)
  write(toJSON(res, auto_unbox = TRUE, digits = NA, null = "null", na = "null", pretty = TRUE), a[2])
}
