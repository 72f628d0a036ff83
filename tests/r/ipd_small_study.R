# Stage 1 of the IPD meta-analysis in a study of 2 patients (lme4 fits it; issue 12: it must not abort the
# analysis). Same stage-1 steps as ../shared/reference/tools/reference_ipd.R, on study S01's patients
# S1-P0000 and S1-P0001 of tests/data/multistudy_public.csv; also lme4's singular flag and messages.
# usage (from the repository root): Rscript tests/r/ipd_small_study.R > tests/expected/ipd_two_patient_study.json
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
d <- read.csv("tests/data/multistudy_public.csv"); d$patient <- as.character(d$patient)
x <- d[d$patient %in% c("S1-P0000", "S1-P0001"), ]; x <- x[order(x$patient, x$session), ]
x$az <- (x$alliance - mean(x$alliance)) / sd(x$alliance); x$sz <- (x$symptoms - mean(x$symptoms)) / sd(x$symptoms)
x$ab <- ave(x$az, x$patient); x$sb <- ave(x$sz, x$patient); x$aw <- x$az - x$ab; x$sw <- x$sz - x$sb
prev <- c(NA, head(seq_len(nrow(x)), -1)); ok <- !is.na(prev) & c(FALSE, x$patient[-1] == x$patient[-nrow(x)])
ok[ok] <- x$session[ok] - x$session[prev[ok]] == 1
x$aw_l <- NA; x$sw_l <- NA; x$aw_l[ok] <- x$aw[prev[ok]]; x$sw_l[ok] <- x$sw[prev[ok]]
y <- x[!is.na(x$aw_l), ]
fit <- function(f) { msgs <- character(0)
  m <- withCallingHandlers(lmer(f, y), warning = function(w) { msgs <<- c(msgs, conditionMessage(w)); invokeRestart("muffleWarning") },
         message = function(w) { msgs <<- c(msgs, conditionMessage(w)); invokeRestart("muffleMessage") })
  list(m = m, msgs = msgs) }
f1 <- fit(sz ~ aw_l + sw_l + ab + (1 | patient)); f2 <- fit(az ~ sw_l + aw_l + sb + (1 | patient))
c1 <- summary(f1$m)$coefficients; c2 <- summary(f2$m)$coefficients
out <- list(n_patients = length(unique(y$patient)), n_observations = nrow(y),
  alliance_to_symptoms = list(estimate = c1["aw_l", 1], se = c1["aw_l", 2], singular = isSingular(f1$m), messages = f1$msgs),
  symptoms_to_alliance = list(estimate = c2["sw_l", 1], se = c2["sw_l", 2], singular = isSingular(f2$m), messages = f2$msgs))
cat(toJSON(out, auto_unbox = TRUE, digits = I(12), pretty = TRUE))
