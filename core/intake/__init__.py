"""Stage 1, file → validated table: reading CSV/Excel, column roles, wide → long, validation, instruments."""
