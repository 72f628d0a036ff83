#!/usr/bin/env bash
# Regenerate the lavaan references of tests/test_riclpm.py (needs R with lavaan and jsonlite).
set -euo pipefail
cd "$(dirname "$0")/../.."
E=tests/expected/riclpm
mkdir -p "$E"
R="Rscript tests/r/riclpm_reference.R"
$R tests/data/paperlike_public.csv 1 4 $E/paperlike_1-4.json
$R tests/data/paperlike_public.csv 1 4 $E/paperlike_1-4_free.json free
$R tests/data/paperlike_public.csv 1 3 $E/paperlike_1-3.json
$R tests/data/ipd300.csv 1 7 $E/ipd300_1-7.json
$R tests/data/ipd300.csv 1 7 $E/ipd300_1-7_free.json free
$R tests/data/riclpm_gaps.csv 2 6 $E/gaps_2-6.json
$R tests/data/riclpm_gaps.csv 1 8 $E/gaps_1-8.json
$R tests/data/riclpm_gaps.csv 1 3 $E/gaps_1-3_free.json free
$R tests/data/riclpm_small.csv 1 4 $E/small_1-4.json
$R tests/data/riclpm_small.csv 1 4 $E/small_1-4_free.json free
$R tests/data/riclpm_oq_totals.csv 1 8 $E/oq_totals_1-8.json
$R tests/data/riclpm_weak.csv 1 6 $E/weak_1-6_free.json free
$R tests/data/riclpm_two_maxima.csv 1 3 $E/two_maxima_1-3.json
