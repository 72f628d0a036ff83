# metafor references for meta-regression, leave-one-out, influence, Egger's test and studies with SE = 0
# (issue 27). metafor 3.8-1, R 4.2.
# usage (from the repository root): Rscript tests/r/meta_reference.R
# writes tests/data/meta_bcg.csv (dat.bcg: log risk ratios, SEs and the study-level moderators) and
# tests/expected/meta_metafor.json. The ipd-meta case pools the lme4 stage-1 estimates of
# tests/expected/multistudy_public_meta.json with the study-level moderators defined below.
suppressPackageStartupMessages({library(metafor); library(jsonlite)})
e <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg,
            slab = paste(author, year))
bcg <- data.frame(study = attr(e$yi, "slab"), estimate = as.numeric(e$yi), se = sqrt(as.numeric(e$vi)),
                  ablat = dat.bcg$ablat, year = dat.bcg$year, alloc = dat.bcg$alloc)
write.csv(bcg, "tests/data/meta_bcg.csv", row.names = FALSE)

num <- function(x) if (is.null(x) || length(x) == 0 || is.na(x)) NULL else as.numeric(x)
term <- function(x) ifelse(x == "intrcpt", "intercept", x)
catch <- function(expr) {
  warns <- character(0)
  value <- withCallingHandlers(tryCatch(expr, error = function(err) list(error = conditionMessage(err))),
    warning = function(w) { warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") })
  if (is.list(value) && !is.null(value$error) && length(value) == 1) return(value)
  attr(value, "r_warnings") <- warns
  value
}
coefs <- function(r) {
  out <- list()
  for (i in seq_along(r$b)) out[[term(rownames(r$b)[i])]] <- list(
    estimate = r$b[i], se = r$se[i], stat = r$zval[i], p = r$pval[i], ci_low = r$ci.lb[i], ci_high = r$ci.ub[i])
  out
}
infl <- function(r) {
  f <- influence(r); i <- f$inf
  dfbs <- as.data.frame(unclass(f$dfbs)[seq_len(r$p)]); names(dfbs) <- term(rownames(r$b))
  lapply(seq_len(r$k), function(j) list(label = r$slab[j], rstudent = num(i$rstudent[j]), dffits = num(i$dffits[j]),
    cook_d = num(i$cook.d[j]), cov_r = num(i$cov.r[j]), tau2_del = num(i$tau2.del[j]), qe_del = num(i$QE.del[j]),
    hat = num(i$hat[j]), weight = num(i$weight[j]), dfbs = lapply(dfbs[j, , drop = FALSE], num),
    influential = isTRUE(f$is.infl[j])))
}
l1o <- function(r) {
  l <- leave1out(r)
  lapply(seq_len(r$k), function(j) list(label = l$slab[j], estimate = num(l$estimate[j]), se = num(l$se[j]),
    stat = num(l[[3]][j]), p = num(l$pval[j]), ci_low = num(l$ci.lb[j]), ci_high = num(l$ci.ub[j]),
    q = num(l$Q[j]), q_p = num(l$Qp[j]), tau2 = num(l$tau2[j]), i2 = num(l$I2[j]), h2 = num(l$H2[j])))
}
egger <- function(r) {
  g <- regtest(r)
  list(z = num(g$zval), p = num(g$pval), df = num(g$dfs), limit_estimate = num(g$est),
       limit_ci_low = num(g$ci.lb), limit_ci_high = num(g$ci.ub))
}
summary_of <- function(r) {
  out <- list(k = r$k, tau2 = r$tau2, i2 = num(r$I2), h2 = num(r$H2), q = num(r$QE), q_p = num(r$QEp),
              qm = r$QM, qm_df = r$QMdf[1], qm_df2 = num(r$QMdf[2]), qm_p = r$QMp, coefficients = coefs(r),
              weights = as.numeric(weights(r)), hat = as.numeric(hatvalues(r)), regtest = egger(r),
              influence = infl(r), r_warnings = attr(r, "r_warnings"))
  if (r$int.only) {
    p <- predict(r)
    out <- c(out, list(estimate = as.numeric(r$b), se = r$se, ci_low = r$ci.lb, ci_high = r$ci.ub, p = r$pval,
                       pi_low = p$pi.lb, pi_high = p$pi.ub, leave_one_out = l1o(r)))
  } else {
    out$r2 <- num(r$R2)
  }
  out
}
fit <- function(data, mods, method, test) {
  f <- if (is.null(mods)) NULL else as.formula(paste("~", paste(mods, collapse = " + ")))
  r <- catch(if (is.null(f)) rma(estimate, sei = se, data = data, method = method, test = test, slab = study)
             else rma(estimate, sei = se, mods = f, data = data, method = method, test = test, slab = study))
  if (!is.null(r$error)) return(list(error = r$error))
  c(list(mods = mods, method = tolower(method), knapp_hartung = test == "knha"), summary_of(r))
}

out <- list()
# meta-regression on dat.bcg: numeric, two numeric, categorical, mixed; REML and DL; z and Knapp-Hartung
cases <- list(ablat_reml = list("ablat", "REML", "z"), ablat_reml_knha = list("ablat", "REML", "knha"),
              ablat_dl = list("ablat", "DL", "z"), ablat_year_reml = list(c("ablat", "year"), "REML", "z"),
              alloc_reml = list("alloc", "REML", "z"), ablat_alloc_reml_knha = list(c("ablat", "alloc"), "REML", "knha"),
              year_dl_knha = list("year", "DL", "knha"))
out$mods <- lapply(cases, function(c) fit(bcg, c[[1]], c[[2]], c[[3]]))
# without moderators: leave-one-out, influence, Egger's test
out$plain <- list(reml = fit(bcg, NULL, "REML", "z"), reml_knha = fit(bcg, NULL, "REML", "knha"),
                  dl = fit(bcg, NULL, "DL", "z"))
# a study with SE = 0 (the third): REML keeps it (no Q, I2), DL refuses; REML refuses when tau2 starts at 0
se0 <- bcg; se0$se[3] <- 0
homog <- data.frame(study = paste("Study", 1:5), estimate = c(0.30, 0.31, 0.29, 0.30, 0.305),
                    se = c(0.10, 0.12, 0, 0.15, 0.11))
out$se0 <- list(reml = fit(se0, NULL, "REML", "z"), reml_knha = fit(se0, NULL, "REML", "knha"),
                dl = fit(se0, NULL, "DL", "z"), ablat_reml = fit(se0, "ablat", "REML", "z"),
                homogeneous_reml = fit(homog, NULL, "REML", "z"))
# ipd-meta stage 2 with study-level moderators (stage 1: lme4, tests/expected/multistudy_public_meta.json)
ipd <- fromJSON("tests/expected/multistudy_public_meta.json")
moderators <- data.frame(study = sprintf("S%02d", 1:8), year = c(2004, 2008, 2010, 2012, 2015, 2017, 2019, 2021),
                         setting = c("outpatient", "inpatient", "outpatient", "outpatient", "inpatient",
                                     "outpatient", "inpatient", "outpatient"))
write.csv(moderators, "tests/data/multistudy_moderators.csv", row.names = FALSE)
out$ipd <- list()
for (direction in c("alliance_to_symptoms", "symptoms_to_alliance")) {
  d <- data.frame(study = names(ipd$stage1),
                  estimate = sapply(ipd$stage1, function(s) s[[direction]]$estimate),
                  se = sapply(ipd$stage1, function(s) s[[direction]]$se))
  d <- merge(d, moderators, by = "study")
  out$ipd[[direction]] <- list(year_reml = fit(d, "year", "REML", "z"),
                               year_setting_reml_knha = fit(d, c("year", "setting"), "REML", "knha"),
                               year_dl = fit(d, "year", "DL", "z"), plain_reml = fit(d, NULL, "REML", "z"))
}
out$r_version <- R.version.string; out$metafor <- as.character(packageVersion("metafor"))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null", na = "null"),
           "tests/expected/meta_metafor.json")
