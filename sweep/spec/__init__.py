"""The spec: read and checked once, its optimizer entries and ranges, the grid's trials."""
