# Writes the real data sets the formula tests use (R as a data source and test oracle only):
#   tests/data/btheb_long.csv  HSAUR3::BtheB (Beat the Blues), long: one row per patient and follow-up
#   tests/data/hsb.csv         nlme::MathAchieve + MathAchSchool (High School and Beyond), one row per student
# usage (from the repository root): Rscript tests/r/make_data.R
suppressPackageStartupMessages({library(HSAUR3); library(nlme)})
data("BtheB", package = "HSAUR3")
b <- BtheB; b$subject <- sprintf("B%03d", seq_len(nrow(b)))
months <- c(2, 3, 5, 8); cols <- c("bdi.2m", "bdi.3m", "bdi.5m", "bdi.8m")
long <- do.call(rbind, lapply(seq_along(months), function(i)
  data.frame(subject = b$subject, month = months[i], bdi = b[[cols[i]]], bdi_pre = b$bdi.pre,
             drug = as.character(b$drug), length = as.character(b$length), treatment = as.character(b$treatment))))
long <- long[order(long$subject, long$month), ]
write.csv(long, "tests/data/btheb_long.csv", row.names = FALSE, na = "")
s <- as.data.frame(MathAchSchool); st <- as.data.frame(MathAchieve)
st$School <- as.character(st$School); s$School <- as.character(s$School)
st$student <- ave(seq_len(nrow(st)), st$School, FUN = seq_along)
h <- merge(st, s[, c("School", "Sector", "Size")], by = "School", sort = FALSE)
h <- h[order(h$School, h$student), ]
out <- data.frame(school = h$School, student = h$student, mathach = h$MathAch, ses = h$SES,
                  minority = as.character(h$Minority), sex = as.character(h$Sex), sector = as.character(h$Sector),
                  size = h$Size)
write.csv(out, "tests/data/hsb.csv", row.names = FALSE)
cat(nrow(long), nrow(out), "\n")
