"""Stage 3, clinical indices: own-level deviations, reliable change, ruptures, the caseload."""
