# One REML refit and lmerTest's Satterthwaite t-test per simulated outcome, on data sets the
# project's power simulation produced (tests/r/make_power_refit_cases.py): checks that the
# project's refit + test of a simulation equals lme4 + lmerTest on the same numbers.
# usage: Rscript tests/r/reference_power_refit.R tests/r/power_refit_cases.json tests/expected/power_refit.json
suppressPackageStartupMessages({library(lmerTest); library(jsonlite)})
a <- commandArgs(TRUE)
cases <- fromJSON(a[1], simplifyVector = FALSE)
base <- dirname(a[1])
res <- list()
for (name in names(cases)) {
  cs <- cases[[name]]
  d <- read.csv(file.path(base, cs$data), colClasses = c(patient = "character"))
  if ("therapist" %in% names(d)) d$therapist <- as.character(d$therapist)
  f <- as.formula(cs$formula)
  response <- all.vars(f)[1]
  out <- list()
  for (i in seq_len(cs$k) - 1) {
    d[[response]] <- d[[paste0("y", i)]]
    m <- suppressMessages(suppressWarnings(lmer(f, data = d, REML = TRUE)))
    co <- summary(m)$coefficients
    out[[i + 1]] <- list(estimate = co[cs$term, 1], se = co[cs$term, 2], df = co[cs$term, 3], p = co[cs$term, 5],
                         singular = isSingular(m))
  }
  res[[name]] <- list(formula = cs$formula, term = cs$term, n_observations = nrow(d), fits = out)
  cat(name, "\n")
}
write(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE), a[2])
