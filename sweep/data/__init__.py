"""Data sets: loaded into memory once per run, with the validation split."""
