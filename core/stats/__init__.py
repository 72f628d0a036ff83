"""Stage 2, statistics: within/between decomposition, mixed models and formulas, meta-analysis."""
