# lavaan references for `python -m core riclpm` (core/stats/riclpm.py); adapted from
# /work/shared/reference/tools/reference_riclpm.R (Hamaker et al., 2015; Mulder & Hamaker, 2021 syntax).
# Waves = sessions FIRST..LAST; random intercepts for alliance (A) and symptoms (S) with all loadings 1;
# within components; lagged paths equal over waves, or free per session pair with "free";
# FIML for missed sessions and single missing measures (missing = "ml"), observed intercepts free per wave.
# Adds to the shared script: any FIRST..LAST, per-pair entries for free lags, std.all (standardizedSolution)
# of every lagged path, every parameter with its SE, and the fitMeasures' baseline and ntotal.
# usage: Rscript tests/r/riclpm_reference.R DATA.csv FIRST LAST OUT.json [free]
# made with R 4.x, lavaan 0.6-14 (see "software" in each output).
suppressPackageStartupMessages({library(lavaan); library(jsonlite)})
a <- commandArgs(TRUE); first <- as.integer(a[2]); last <- as.integer(a[3]); free <- length(a) > 4 && a[5] == "free"
d <- read.csv(a[1], colClasses = c(patient = "character"))
d <- d[d$session >= first & d$session <= last, ]
d$wave <- d$session - first + 1
T <- last - first + 1
w <- reshape(d[, c("patient", "wave", "alliance", "symptoms")], idvar = "patient", timevar = "wave", direction = "wide")
names(w) <- sub("alliance\\.", "A", sub("symptoms\\.", "S", names(w)))
for (v in c(paste0("A", 1:T), paste0("S", 1:T))) if (!v %in% names(w)) w[[v]] <- NA_real_
m <- c(paste("RIA =~", paste0("1*A", 1:T, collapse = " + ")), paste("RIS =~", paste0("1*S", 1:T, collapse = " + ")))
for (t in 1:T) m <- c(m, sprintf("wA%d =~ 1*A%d", t, t), sprintf("wS%d =~ 1*S%d", t, t), sprintf("A%d ~~ 0*A%d", t, t), sprintf("S%d ~~ 0*S%d", t, t))
lab <- function(x, t) if (free) paste0(x, t) else x
for (t in 2:T) m <- c(m, sprintf("wA%d ~ %s*wA%d + %s*wS%d", t, lab("aa", t), t - 1, lab("sa", t), t - 1),
                          sprintf("wS%d ~ %s*wS%d + %s*wA%d", t, lab("ss", t), t - 1, lab("as", t), t - 1))
m <- c(m, "wA1 ~~ wS1", sapply(2:T, function(t) sprintf("wA%d ~~ wS%d", t, t)),
       sapply(1:T, function(t) sprintf("wA%d ~~ wA%d", t, t)), sapply(1:T, function(t) sprintf("wS%d ~~ wS%d", t, t)),
       "RIA ~~ RIA", "RIS ~~ RIS", "RIA ~~ RIS", "RIA ~~ 0*wA1", "RIA ~~ 0*wS1", "RIS ~~ 0*wA1", "RIS ~~ 0*wS1")
msgs <- character()
fit <- withCallingHandlers(
  lavaan(paste(m, collapse = "\n"), data = w, missing = "ml", meanstructure = TRUE, int.ov.free = TRUE, int.lv.free = FALSE,
         auto.fix.first = FALSE, auto.var = FALSE),
  warning = function(w) { msgs <<- c(msgs, conditionMessage(w)); invokeRestart("muffleWarning") })
pe <- parameterEstimates(fit)
ss <- standardizedSolution(fit)
pe$std_all <- ss$est.std
entry <- function(r) list(estimate = r$est, se = r$se, p = r$pvalue, std_all = r$std_all)
keys <- c(as = "alliance_to_symptoms", sa = "symptoms_to_alliance", aa = "alliance_autoregressive", ss = "symptoms_autoregressive")
lagged <- list()
for (k in names(keys)) {
  rows <- pe[pe$op == "~" & grepl(paste0("^", k, "[0-9]*$"), pe$label), ]
  if (!free) {
    e <- entry(rows[1, ]); e$std_all <- rows$std_all  # std.all differs by session pair
    e$from_session <- first + as.integer(sub("w[AS]", "", rows$rhs)) - 1
    lagged[[keys[[k]]]] <- e
  } else {
    lagged[[keys[[k]]]] <- lapply(seq_len(nrow(rows)), function(i) c(list(from_session = first + as.integer(sub("w[AS]", "", rows$rhs[i])) - 1,
      to_session = first + as.integer(sub("w[AS]", "", rows$lhs[i])) - 1), entry(rows[i, ])))
  }
}
fm <- fitMeasures(fit, c("logl", "unrestricted.logl", "chisq", "df", "pvalue", "cfi", "tli", "rmsea", "rmsea.ci.lower", "rmsea.ci.upper", "aic", "bic",
                         "npar", "ntotal", "baseline.chisq", "baseline.df"))
fmv <- function(k) unname(fm[k])
res <- list(data = basename(a[1]), first = first, last = last, sessions = T, n_patients = lavInspect(fit, "ntotal"),
  constrained = !free, converged = lavInspect(fit, "converged"), warnings = msgs,
  fit = list(loglik = fmv("logl"), unrestricted_loglik = fmv("unrestricted.logl"), chisq = fmv("chisq"), df = fmv("df"),
             pvalue = fmv("pvalue"), cfi = fmv("cfi"), tli = fmv("tli"), rmsea = fmv("rmsea"),
             rmsea_ci_low = fmv("rmsea.ci.lower"), rmsea_ci_high = fmv("rmsea.ci.upper"), aic = fmv("aic"), bic = fmv("bic"),
             npar = fmv("npar"), baseline_chisq = fmv("baseline.chisq"), baseline_df = fmv("baseline.df")),
  random_intercepts = list(alliance_variance = entry(pe[pe$lhs == "RIA" & pe$rhs == "RIA", ]),
                           symptoms_variance = entry(pe[pe$lhs == "RIS" & pe$rhs == "RIS", ]),
                           covariance = entry(pe[pe$lhs == "RIA" & pe$rhs == "RIS", ])),
  lagged = lagged,
  parameters = lapply(which(pe$se > 0 | pe$op == "~1" & pe$se > 0), function(i) list(lhs = pe$lhs[i], op = pe$op[i], rhs = pe$rhs[i],
                      label = pe$label[i], estimate = pe$est[i], se = pe$se[i], p = pe$pvalue[i], std_all = pe$std_all[i])),
  software = list(R = paste(R.version$major, R.version$minor, sep = "."), lavaan = as.character(packageVersion("lavaan"))))
write(toJSON(res, auto_unbox = TRUE, digits = NA, null = "null", na = "null", pretty = TRUE), a[4])
cat(a[1], first, last, if (free) "free" else "equal", "ok\n")
