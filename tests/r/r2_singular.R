# performance::r2_nakagawa on singular fits (issue 27): which R² performance 0.10.2 gives when a
# variance component is at zero. Same data preparation as fit_cases.R.
# usage: Rscript tests/r/r2_singular.R tests/r/r2_singular_cases.json tests/expected/r2_singular.json
suppressPackageStartupMessages({library(lme4); library(jsonlite); library(performance)})
a <- commandArgs(TRUE); cases <- fromJSON(a[1], simplifyVector = FALSE)
base <- dirname(a[1])
source(file.path(dirname(sub("--file=", "", grep("--file=", commandArgs(FALSE), value = TRUE)[1])), "prepare_case.R"))
res <- list()
for (name in names(cases)) {
  cs <- cases[[name]]
  d <- derive(read_case(file.path(base, cs$data), cs$roles), cs$roles)
  f <- as.formula(cs$formula)
  used <- d[complete.cases(d[, all.vars(f)]), ]
  # BOBYQA to rhoend = 1e-12: default lme4 stops with a relative SD of ~1e-5 where the optimum is 0, and
  # insight's 1e-5 tolerance would then judge where the optimiser stopped (measured.md, 2026-12-07)
  # (messy_five_patients: the deviance is flat to 1e-9 towards a therapist SD of 0, where BOBYQA stops at a
  # relative SD of 4e-5 even so; Nelder-Mead reaches the boundary, as this project's optimiser does)
  ctl <- if (is.null(cs$optimizer)) lmerControl(optCtrl = list(rhoend = 1e-12)) else lmerControl(optimizer = cs$optimizer)
  m <- suppressMessages(suppressWarnings(lmer(f, data = used, REML = TRUE, control = ctl)))
  msgs <- character(0)
  r2 <- withCallingHandlers(r2_nakagawa(m),
          warning = function(w) { msgs <<- c(msgs, conditionMessage(w)); invokeRestart("muffleWarning") })
  res[[name]] <- list(formula = cs$formula, singular = isSingular(m),
                      r2_marginal = if (is.null(r2$R2_marginal)) NA else unname(r2$R2_marginal),
                      r2_conditional = if (is.null(r2$R2_conditional)) NA else unname(r2$R2_conditional),
                      messages = msgs)
  cat(name, isSingular(m), unlist(r2), "\n")
}
write(toJSON(res, auto_unbox = TRUE, digits = NA, null = "null", na = "null", pretty = TRUE), a[2])
