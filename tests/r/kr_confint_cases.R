# pbkrtest (Kenward-Roger) and lme4 confint (profile, parametric bootstrap) references for
# `python -m core fit --df kr --confint profile|boot` (issue 27). Same data preparation as fit_cases.R.
# For each case: lmerTest's summary(ddf = "Kenward-Roger") table (estimate, adjusted SE, df, t, p),
# pbkrtest::KRmodcomp of the model without each single-column term (F, ddf, p: simr's "kr" test),
# and, where asked, confint(method = "profile") and confint(method = "boot", nsim = 1000,
# boot.type = "perc") with oldNames = FALSE.
# usage (from the repository root): Rscript tests/r/kr_confint_cases.R tests/r/fit_cases.json tests/expected/kr NAME...
suppressPackageStartupMessages({library(lmerTest); library(jsonlite); library(pbkrtest)})
a <- commandArgs(TRUE); cases <- fromJSON(a[1], simplifyVector = FALSE); out <- a[2]
spec <- a[-(1:2)]  # NAME or NAME:profile or NAME:profile:boot
base <- dirname(a[1])
source(file.path(dirname(sub("--file=", "", grep("--file=", commandArgs(FALSE), value = TRUE)[1])), "prepare_case.R"))
dir.create(out, showWarnings = FALSE, recursive = TRUE)
for (s in spec) {
  parts <- strsplit(s, ":")[[1]]; name <- parts[1]; what <- parts[-1]
  cs <- cases[[name]]
  d <- derive(read_case(file.path(base, cs$data), cs$roles), cs$roles)
  f <- as.formula(cs$formula)
  used <- d[complete.cases(d[, all.vars(f)]), ]
  m <- suppressMessages(suppressWarnings(lmer(f, data = used, REML = TRUE,
                                             control = lmerControl(optCtrl = list(rhoend = 1e-12)))))
  co <- summary(m, ddf = "Kenward-Roger")$coefficients
  kr <- list()
  X <- getME(m, "X")
  for (i in seq_len(nrow(co))) {
    term <- sub("^\\(Intercept\\)$", "intercept", rownames(co)[i])
    L <- matrix(0, 1, ncol(X)); L[1, i] <- 1
    km <- KRmodcomp(m, L)$test
    kr[[term]] <- list(estimate = co[i, 1], se = co[i, 2], df = co[i, 3], t = co[i, 4], p = co[i, 5],
                       F = km["Ftest", "stat"], F_ddf = km["Ftest", "ddf"], F_p = km["Ftest", "p.value"],
                       F_scaling = km["FtestU", "stat"])
  }
  res <- list(formula = cs$formula, n_observations = nrow(used), loglik_reml = as.numeric(logLik(m)),
              theta = unname(getME(m, "theta")), sigma = sigma(m), kenward_roger = kr,
              satterthwaite_df = unname(summary(m)$coefficients[, "df"]))
  ci_rows <- function(ci) lapply(seq_len(nrow(ci)), function(i) list(parameter = rownames(ci)[i], low = unname(ci[i, 1]), high = unname(ci[i, 2])))
  if ("profile" %in% what) {
    pr <- suppressMessages(suppressWarnings(profile(m, signames = TRUE)))  # names as oldNames = FALSE
    spline_warnings <- character(0)
    ci <- withCallingHandlers(confint(pr),
            warning = function(w) { spline_warnings <<- c(spline_warnings, conditionMessage(w)); invokeRestart("muffleWarning") })
    # confint(<profile>) names the rows .sig01 …: lme4's oldNames = FALSE names, as confint(fit, ...) gives them
    rownames(ci) <- rownames(confint(m, method = "Wald", oldNames = FALSE))
    res$profile <- ci_rows(ci)
    res$profile_warnings <- spline_warnings
    # the tabulated profile (zeta at each value), for a check that does not depend on R's interpolation
    res$profile_table <- lapply(split(pr, pr$.par), function(t) { v <- as.character(t$.par[1]); list(par = v, value = t[[v]], zeta = t$.zeta) })
  }
  if ("boot" %in% what) {
    t0 <- proc.time()[["elapsed"]]
    ci <- suppressMessages(suppressWarnings(confint(m, method = "boot", nsim = 1000, boot.type = "perc",
                                                    oldNames = FALSE, seed = 27)))
    res$boot <- ci_rows(ci); res$boot_nsim <- 1000; res$boot_seconds <- proc.time()[["elapsed"]] - t0
  }
  write(toJSON(res, auto_unbox = TRUE, digits = NA, null = "null", na = "null", pretty = TRUE), file.path(out, paste0(name, ".json")))
  cat(name, nrow(used), "\n")
}
