# Reference for core/clinical/signal.py: the expected course and its prediction interval by lme4.
#
# Usage: Rscript tests/r/signal_reference.R DATA.csv OUT.json [INTAKE_COLUMN]
# DATA.csv: patient, session, symptoms (and the intake column when given).
# Replicates the project's definition (README, "Early-warning signal"): course session j = session -
# the patient's first session + 1; intake = the first session's score (or the intake column);
# refits at j = 2..12, then floor(1.25 t) (from 1 with an intake column), each on the sessions up to
# t, made only where >= 10 patients have a score among the sessions it adds; the first refit is
# lm(y ~ intake_c), later ones lmer(y ~ intake_c * log_session + (log_session | patient)), or
# (1 | patient) when there are no more than two sessions per patient; REML.
# Prediction for a new patient: z'b and sqrt(u'Gu + sigma^2 + z'V z).
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1], stringsAsFactors = FALSE)
d$patient <- as.character(d$patient)
intake_col <- if (length(args) >= 3) args[3] else NA
d <- d[order(d$patient, d$session), ]
d$j <- d$session - ave(d$session, d$patient, FUN = min) + 1
first_value <- function(x) { x <- x[!is.na(x)]; if (length(x)) x[1] else NA }
if (is.na(intake_col)) {
  d$intake <- ave(ifelse(d$j == 1, d$symptoms, NA), d$patient, FUN = first_value)
  first <- 2
} else {
  d$intake <- ave(d[[intake_col]], d$patient, FUN = first_value)
  first <- 1
}
intake_mean <- mean(tapply(d$intake, d$patient, function(x) x[1]))
fr <- d[d$j >= first & !is.na(d$intake), ]
fr$y <- fr$symptoms
fr$intake_c <- fr$intake - intake_mean
fr$log_session <- log(fr$j)
grid <- c(); t <- 1
while (t <= max(fr$j)) { if (t >= first) grid <- c(grid, t); t <- if (t < 12) t + 1 else floor(t * 1.25) }
fits <- list(); prev <- -Inf
for (t in grid) {
  win <- fr[fr$j > prev & fr$j <= t, ]
  if (length(unique(win$patient)) < 10) next
  prev <- t
  part <- fr[fr$j <= t, ]
  if (length(fits) == 0) {
    m <- lm(y ~ intake_c, data = part)
    b <- c(coef(m), 0, 0); V <- matrix(0, 4, 4); V[1:2, 1:2] <- vcov(m)
    G <- matrix(0, 2, 2); s2 <- summary(m)$sigma^2; kind <- "regression"
  } else {
    slope <- nrow(part) > 2 * length(unique(part$patient))
    f <- if (slope) y ~ intake_c * log_session + (log_session | patient) else y ~ intake_c * log_session + (1 | patient)
    m <- lmer(f, data = part, REML = TRUE)
    b <- unname(fixef(m)); V <- unname(as.matrix(vcov(m)))
    vc <- VarCorr(m)$patient; G <- matrix(0, 2, 2); G[1:nrow(vc), 1:ncol(vc)] <- vc
    s2 <- sigma(m)^2; kind <- if (slope) "random_slope" else "random_intercept"
  }
  fits[[length(fits) + 1]] <- list(up_to = t, kind = kind, fixed = unname(b), fixed_cov = V, patient_cov = G,
                                   residual = s2, n_observations = nrow(part))
}
ups <- sapply(fits, function(f) f$up_to)
rows <- list()
for (i in seq_len(nrow(fr))) {
  k <- max(which(ups <= fr$j[i]))
  if (!is.finite(k) || fr$j[i] > 1.5 * max(ups)) next
  f <- fits[[k]]; x <- fr$intake_c[i]; tau <- fr$log_session[i]
  z <- c(1, x, tau, x * tau); u <- c(1, tau)
  rows[[length(rows) + 1]] <- list(patient = fr$patient[i], session = fr$session[i],
                                   expected = sum(z * f$fixed),
                                   sd = sqrt(drop(t(u) %*% f$patient_cov %*% u) + f$residual + drop(t(z) %*% f$fixed_cov %*% z)))
}
write(toJSON(list(intake_mean = intake_mean, fits = fits, rows = rows, lme4 = as.character(packageVersion("lme4"))),
             auto_unbox = TRUE, digits = NA), args[2])
