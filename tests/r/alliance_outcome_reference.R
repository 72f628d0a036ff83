# References for `python -m core alliance-outcome` (issue 30): stage 1 with lm on z-scored variables,
# stage 2 with metafor::rma (metafor 3.8-1, R 4.2).
# usage (from the repository root): Rscript tests/r/alliance_outcome_reference.R
# Reads tests/data/alliance_outcome_multistudy.csv (tests/r/make_alliance_outcome_data.py); writes
# tests/data/btheb_alliance_outcome.csv (HSAUR3's BtheB in long form) and tests/expected/alliance_outcome.json.
# Per patient: early = mean alliance in sessions FIRST..LAST; intake = symptoms at the first session with
# one; post = the post column (one value) or the last symptom score after session LAST.
suppressPackageStartupMessages({library(metafor); library(jsonlite); library(HSAUR3)})

per_patient <- function(d, first, last, post) {
  out <- list()
  for (key in unique(paste(d$study, d$patient, sep = "\r"))) {
    x <- d[paste(d$study, d$patient, sep = "\r") == key, ]; x <- x[order(x$session), ]
    a <- x$alliance[x$session >= first & x$session <= last & !is.na(x$alliance)]
    s <- x[!is.na(x$symptoms), ]
    early <- if (length(a)) mean(a) else NA
    intake <- if (nrow(s)) s$symptoms[1] else NA
    if (is.null(post)) {
      after <- s[s$session > last, ]; p <- if (nrow(after)) after$symptoms[nrow(after)] else NA
    } else {
      v <- unique(x[[post]][!is.na(x[[post]])]); p <- if (length(v) == 1) v else NA
    }
    out[[length(out) + 1]] <- data.frame(study = x$study[1], patient = x$patient[1], early = early,
                                         intake = intake, post = p)
  }
  z <- do.call(rbind, out)
  z[complete.cases(z), ]
}
stage1 <- function(p) {
  res <- list()
  for (s in sort(unique(p$study))) {
    x <- p[p$study == s, ]
    m <- lm(scale(post) ~ scale(early) + scale(intake), data = x)
    co <- coef(summary(m)); ci <- confint(m)
    res[[s]] <- list(n_patients = nrow(x), estimate = co[2, 1], se = co[2, 2], t = co[2, 3], p = co[2, 4],
                     df = m$df.residual, ci_low = ci[2, 1], ci_high = ci[2, 2], r = cor(x$early, x$post))
  }
  res
}
pool <- function(s1) {
  yi <- sapply(s1, `[[`, "estimate"); sei <- sapply(s1, `[[`, "se")
  zi <- atanh(sapply(s1, `[[`, "r")); zse <- 1 / sqrt(sapply(s1, `[[`, "n_patients") - 3)
  f <- function(method, test) {
    r <- rma(yi, sei = sei, method = method, test = test); p <- predict(r)
    z <- rma(zi, sei = zse, method = method, test = test)
    list(pooled = list(estimate = as.numeric(r$b), se = r$se, ci_low = r$ci.lb, ci_high = r$ci.ub, p = r$pval,
                       tau2 = r$tau2, i2 = r$I2, q = r$QE, q_p = r$QEp, pi_low = p$pi.lb, pi_high = p$pi.ub),
         pooled_r = list(r = tanh(as.numeric(z$b)), ci_low = tanh(z$ci.lb), ci_high = tanh(z$ci.ub), tau2 = z$tau2,
                         i2 = z$I2))
  }
  if (length(yi) < 2) return(NULL)
  list(reml = f("REML", "z"), reml_knapp_hartung = f("REML", "knha"), dl = f("DL", "z"))
}
case <- function(d, first, last, post, study = TRUE) {
  if (!study) d$study <- "all"
  p <- per_patient(d, first, last, post)
  s1 <- stage1(p)
  list(early_sessions = c(first, last), n_patients = nrow(p), stage1 = s1, pool = pool(s1))
}

out <- list()
ms <- read.csv("tests/data/alliance_outcome_multistudy.csv", stringsAsFactors = FALSE)
out$multistudy_post <- case(ms, 1, 4, "post")
out$multistudy_last <- case(ms, 1, 4, NULL)
out$multistudy_post_2_5 <- case(ms, 2, 5, "post")
out$one_study_post <- case(ms[ms$study == "C", ], 1, 4, "post", study = FALSE)

# HSAUR3's BtheB (Beat the Blues): BDI before treatment and at 2, 3, 5 and 8 months. It has no alliance
# measure: the early BDI at 2 months stands in for the early predictor (session 2 = 2 months), bdi.pre
# is the intake (session 0), and the outcome is bdi.8m (a post-treatment column) or the last BDI after
# 2 months; the two arms (treatment) are the two "studies".
data("BtheB", package = "HSAUR3")
b <- BtheB; b$patient <- sprintf("B%03d", seq_len(nrow(b)))
long <- do.call(rbind, lapply(c(pre = 0, `2m` = 2, `3m` = 3, `5m` = 5, `8m` = 8), function(s) {
  col <- if (s == 0) "bdi.pre" else sprintf("bdi.%dm", s)
  data.frame(patient = b$patient, treatment = as.character(b$treatment), drug = as.character(b$drug),
             length = as.character(b$length), session = s, bdi = b[[col]], bdi_8m = b$bdi.8m,
             early_bdi = if (s == 2) b$bdi.2m else NA)
}))
long <- long[order(long$patient, long$session), ]
long <- long[!is.na(long$bdi) | long$session == 0, ]
write.csv(long, "tests/data/btheb_alliance_outcome.csv", row.names = FALSE, na = "")
bl <- data.frame(study = long$treatment, patient = long$patient, session = long$session, alliance = long$early_bdi,
                 symptoms = long$bdi, post = long$bdi_8m)
out$btheb_post <- case(bl, 2, 2, "post")
out$btheb_last <- case(bl, 2, 2, NULL)
out$btheb_one_study <- case(bl, 2, 2, "post", study = FALSE)
out$r_version <- R.version.string; out$metafor <- as.character(packageVersion("metafor"))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null", na = "null"),
           "tests/expected/alliance_outcome.json")
