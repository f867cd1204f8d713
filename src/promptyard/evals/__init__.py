"""Execution-based evaluation: datasets, code extraction, a sandbox, pass@k, runs and comparisons."""
