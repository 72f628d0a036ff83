"""Stage 4, presentation: tables in the paper's shape, figures, JSON and HTML reports, exports."""
