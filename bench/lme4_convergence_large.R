# What lme4 1.1-31 says about convergence at 1,000,000 rows (issue 27): simulated sessions of a national
# data set (125,000 patients x 8 sessions, within-patient alliance effect -0.10, between -0.22), the
# ladder's models fitted with lme4's defaults. For each fit: lme4's messages, its gradient, the scaled
# gradient solve(chol(H), g) that check.conv.grad tests, the relative gradient solve(H, g) (the Newton
# step to the optimum), the Hessian's eigenvalues, and the estimates.
# usage: Rscript bench/lme4_convergence_large.R [N_PATIENTS] > bench/lme4_convergence_large.json
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
a <- commandArgs(TRUE)
np <- if (length(a)) as.integer(a[1]) else 125000L
set.seed(27)
ns <- 8L
patient <- rep(seq_len(np), each = ns)
therapist <- rep(sample.int(max(2L, np %/% 40L), np, replace = TRUE), each = ns)
session <- rep(seq_len(ns), np)
time <- session - 1
u0 <- rnorm(np, 0, 5)[patient]; u1 <- rnorm(np, 0, 0.8)[patient]
tre <- rnorm(max(therapist), 0, 1.5)[therapist]
am <- rnorm(np, 5, 0.7)[patient]
alliance <- am + rnorm(np * ns, 0, 0.5) + 0.05 * time
pm <- ave(alliance, patient); gm <- mean(tapply(alliance, patient, mean))
ab <- pm - gm; aw <- alliance - pm
symptoms <- 70 - 1.5 * time + u0 + u1 * time + tre - 0.224 * ab * 10 - 0.10 * aw * 10 + rnorm(np * ns, 0, 6)
d <- data.frame(patient = factor(patient), therapist = factor(therapist), time, symptoms,
                alliance_between = ab, alliance_within = aw)
forms <- list(
  unconditional = symptoms ~ 1 + (1 | patient),
  unconditional_3level = symptoms ~ 1 + (1 | therapist) + (1 | patient),
  time = symptoms ~ time + (time | patient),
  hybrid = symptoms ~ alliance_between + alliance_within + (1 | patient),
  hybrid_detrended = symptoms ~ alliance_between + alliance_within + time + (1 | patient),
  interaction = symptoms ~ alliance_between * alliance_within + (1 | patient))
out <- list(n_rows = nrow(d), n_patients = np, lme4 = as.character(packageVersion("lme4")), fits = list())
for (k in names(forms)) {
  msgs <- character(0)
  t0 <- proc.time()[["elapsed"]]
  m <- withCallingHandlers(lmer(forms[[k]], data = d, REML = TRUE),
         warning = function(w) { msgs <<- c(msgs, conditionMessage(w)); invokeRestart("muffleWarning") },
         message = function(w) { msgs <<- c(msgs, conditionMessage(w)); invokeRestart("muffleMessage") })
  secs <- proc.time()[["elapsed"]] - t0
  dv <- m@optinfo$derivs
  H <- dv$Hessian; g <- dv$gradient
  sc <- tryCatch(as.numeric(solve(chol(H), g)), error = function(e) NA)
  rel <- tryCatch(as.numeric(solve(H, g)), error = function(e) NA)
  conv <- m@optinfo$conv$lme4
  out$fits[[k]] <- list(messages = msgs, code = if (is.null(conv$code)) 0 else conv$code,
                        theta = getME(m, "theta"), gradient = g, scaled_gradient = sc, relative_gradient = rel,
                        hessian_eigenvalues = eigen(H, symmetric = TRUE, only.values = TRUE)$values,
                        fixef = as.list(fixef(m)), loglik = as.numeric(logLik(m)), seconds = secs)
  cat(k, secs, length(msgs), "\n", file = stderr())
}
cat(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE))
