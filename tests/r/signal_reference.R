# Reference for core/clinical/signal.py: the expected course and its prediction interval by lme4.
#
# Usage: Rscript tests/r/signal_reference.R DATA.csv OUT.json [INTAKE_COLUMN|-] [RC] [lower]
# DATA.csv: patient, session, symptoms (and the intake column when given; "-" for none).
# RC: each refit leaves out the patients whose latest score up to t is worse than their intake by
# at least RC and their score before it by at least RC / 2 (as the project's "patients doing as
# expected"); "lower": lower scores are worse.
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
intake_col <- if (length(args) >= 3 && args[3] != "-") args[3] else NA
rc <- if (length(args) >= 4) as.numeric(args[4]) else NA
sgn <- if (length(args) >= 5 && args[5] == "lower") -1 else 1
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
fr <- d[d$j >= first & !is.na(d$intake) & !is.na(d$symptoms), ]
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
  n_left <- 0
  if (!is.na(rc)) {
    worse <- sgn * (part$y - part$intake)
    prev_same <- c(FALSE, part$patient[-1] == part$patient[-nrow(part)])
    before <- c(FALSE, worse[-nrow(part)] >= rc / 2) & prev_same
    latest <- !duplicated(part$patient, fromLast = TRUE)
    out <- unique(part$patient[latest & worse >= rc & before])
    n_left <- length(out)
    part <- part[!(part$patient %in% out), ]
  }
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
                                   residual = s2, n_observations = nrow(part), n_left_out = n_left)
}
ups <- sapply(fits, function(f) f$up_to)
# The statistics of every scored session with a fit, straight from the matrices (the project
# computes them from running sums): r = sgn * (y - Z b) over the patient's sessions up to j,
# V = U G U' + s2 I; "now": a = U G (1, ln j)', "slope": a = U G (0, 1)' (a = 1 where G gives no
# direction); T = a'V^-1 r / sqrt(a'V^-1 a + c'V_b c), c = Z'V^-1 a; "session": r_j / sd_j.
stat <- function(a, Vi, r, Z, Vb) {
  w <- drop(Vi %*% a); cc <- drop(t(Z) %*% w)
  sum(w * r) / sqrt(sum(w * a) + drop(t(cc) %*% Vb %*% cc))
}
rows <- list()
for (i in seq_len(nrow(fr))) {
  k <- max(which(ups <= fr$j[i]))
  if (!is.finite(k) || fr$j[i] > 1.5 * max(ups)) next
  f <- fits[[k]]; x <- fr$intake_c[i]; tau <- fr$log_session[i]
  z <- c(1, x, tau, x * tau); u <- c(1, tau)
  sd <- sqrt(drop(t(u) %*% f$patient_cov %*% u) + f$residual + drop(t(z) %*% f$fixed_cov %*% z))
  mine <- fr[fr$patient == fr$patient[i] & fr$j <= fr$j[i], ]
  U <- cbind(1, mine$log_session); Z <- cbind(1, mine$intake_c, mine$log_session, mine$intake_c * mine$log_session)
  r <- sgn * (mine$y - drop(Z %*% f$fixed))
  V <- U %*% f$patient_cov %*% t(U) + f$residual * diag(nrow(mine)); Vi <- solve(V)
  G <- f$patient_cov; scale <- max(abs(G), 1e-300)
  a_now <- drop(U %*% G %*% u); a_slope <- drop(U %*% G %*% c(0, 1))
  h_now <- drop(G %*% u); h_slope <- G[, 2]
  if (sum(abs(h_now)) <= 1e-9 * scale) a_now <- rep(1, nrow(mine))
  if (sum(abs(h_slope)) <= 1e-9 * scale) a_slope <- rep(1, nrow(mine))
  rows[[length(rows) + 1]] <- list(patient = fr$patient[i], session = fr$session[i],
                                   expected = sum(z * f$fixed), sd = sd,
                                   z_session = sgn * (fr$y[i] - sum(z * f$fixed)) / sd,
                                   z_now = stat(a_now, Vi, r, Z, f$fixed_cov),
                                   z_slope = stat(a_slope, Vi, r, Z, f$fixed_cov))
}
write(toJSON(list(intake_mean = intake_mean, fits = fits, rows = rows, lme4 = as.character(packageVersion("lme4"))),
             auto_unbox = TRUE, digits = NA), args[2])
