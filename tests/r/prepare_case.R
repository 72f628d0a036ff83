# One case's data as the project reads it (sourced by fit_cases.R, kr_confint_cases.R, r2_singular.R,
# reference_power.R): roles renamed, columns typed (numeric when every non-missing cell parses as a
# number, a decimal comma read as a point; otherwise a factor with levels in C order, as Python sorts
# them), and the derived variables: time = session - min(session) (time_derived when the file has its own
# time column or its session column is named time: the file's column keeps the name, as in R) and, for
# alliance and symptoms, m_between = patient mean - mean of patient means, m_within = m - patient mean.
na_strings <- c("", "NA", "n/a", "N/A", ".", "-")

read_case <- function(path, roles) {
  d <- read.csv(path, colClasses = "character", na.strings = na_strings, check.names = FALSE)
  d$.row <- seq_len(nrow(d)) + 1L
  for (r in names(roles)) { col <- roles[[r]]; v <- d[[col]]; d[[col]] <- NULL; d[[r]] <- v }
  for (col in setdiff(names(d), ".row")) {
    if (col %in% c("patient", "therapist")) next
    txt <- trimws(d[[col]])
    txt <- sub("^([-+]?[0-9]*),([0-9]+)$", "\\1.\\2", txt)
    num <- suppressWarnings(as.numeric(txt))
    if (all(is.na(num) == is.na(d[[col]]))) d[[col]] <- num
    else d[[col]] <- factor(d[[col]], levels = sort(unique(d[[col]][!is.na(d[[col]])]), method = "radix"))
  }
  d
}

derive <- function(d, roles = list()) {
  derived_time <- d$session - min(d$session, na.rm = TRUE)
  if ("time" %in% names(d) && !identical(roles$session, "time")) d$time_derived <- derived_time
  else if (identical(roles$session, "time")) { d$time <- d$session; d$time_derived <- derived_time }
  else d$time <- derived_time
  for (m in intersect(c("alliance", "symptoms"), names(d))) {
    pm <- ave(d[[m]], d$patient, FUN = function(x) mean(x, na.rm = TRUE))
    gm <- mean(tapply(d[[m]], d$patient, function(x) mean(x, na.rm = TRUE)), na.rm = TRUE)
    d[[paste0(m, "_between")]] <- pm - gm
    d[[paste0(m, "_within")]] <- d[[m]] - pm
  }
  d
}
