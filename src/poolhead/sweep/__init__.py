"""Sweeps that wrap runs: job skip/resume/claims and exit status (`jobs.py`), successive halving, Optuna, the report."""
