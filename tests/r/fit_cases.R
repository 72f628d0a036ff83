# lme4/lmerTest (and performance::r2_nakagawa) references for `python -m core fit`.
# Adapted from ../shared/reference/tools/reference_fit.R (same derived variables and typing rules), with:
#   - factor levels sorted in C order (method = "radix"), as Python sorts them;
#   - a decimal comma read as a decimal point (as the project reads it);
#   - rows_used (spreadsheet row numbers: header = 1) and `converged` (no lme4 convergence message).
# usage (from the repository root): Rscript tests/r/fit_cases.R tests/r/fit_cases.json tests/expected/fit
suppressPackageStartupMessages({library(lmerTest); library(jsonlite); library(performance)})
a <- commandArgs(TRUE); cases <- fromJSON(a[1], simplifyVector = FALSE); out <- a[2]
only <- if (length(a) > 2) a[-(1:2)] else names(cases)
base <- dirname(a[1])
source(file.path(dirname(sub("--file=", "", grep("--file=", commandArgs(FALSE), value = TRUE)[1])), "prepare_case.R"))
for (name in only) {
  cs <- cases[[name]]
  d <- derive(read_case(file.path(base, cs$data), cs$roles), cs$roles)
  f <- as.formula(cs$formula)
  vars <- all.vars(f)
  used <- d[complete.cases(d[, vars]), ]
  msgs <- character(0)
  m <- withCallingHandlers(lmer(f, data = used, REML = TRUE),
         warning = function(w) { msgs <<- c(msgs, conditionMessage(w)); invokeRestart("muffleWarning") },
         message = function(w) { msgs <<- c(msgs, conditionMessage(w)); invokeRestart("muffleMessage") })
  mml <- suppressMessages(suppressWarnings(update(m, REML = FALSE)))
  co <- summary(m)$coefficients
  fx <- list()
  for (i in seq_len(nrow(co))) {
    q <- qt(0.975, co[i, 3])
    fx[[sub("^\\(Intercept\\)$", "intercept", rownames(co)[i])]] <- list(estimate = co[i, 1], se = co[i, 2], df = co[i, 3], t = co[i, 4], p = co[i, 5], ci_low = co[i, 1] - q * co[i, 2], ci_high = co[i, 1] + q * co[i, 2])
  }
  vc <- as.data.frame(VarCorr(m))
  vcl <- lapply(seq_len(nrow(vc)), function(i) list(group = vc$grp[i], var1 = vc$var1[i], var2 = vc$var2[i], vcov = vc$vcov[i]))
  conv <- m@optinfo$conv$lme4
  res <- list(formula = cs$formula, n_observations = nrow(used), n_patients = length(unique(used$patient)),
              rows_used = used$.row,
              fixed = fx, variance = vcl, loglik_reml = as.numeric(logLik(m)), loglik_ml = as.numeric(logLik(mml)),
              n_params_ml = attr(logLik(mml), "df"), aic = AIC(mml), bic = BIC(mml),
              singular = isSingular(m), converged = is.null(conv$code) || all(conv$code == 0),
              messages = msgs)
  r2 <- tryCatch(suppressWarnings(performance::r2_nakagawa(m)), error = function(e) NULL)
  if (!is.null(r2) && !isSingular(m)) { res$r2_marginal <- unname(r2$R2_marginal); res$r2_conditional <- unname(r2$R2_conditional) }
  write(toJSON(res, auto_unbox = TRUE, digits = NA, null = "null", na = "null", pretty = TRUE), file.path(out, paste0(name, ".json")))
  cat(name, nrow(used), length(msgs), "\n")
}
