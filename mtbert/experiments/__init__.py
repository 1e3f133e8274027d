"""Experiment tooling over runs: hyper-parameter search (Optuna), run reports, run comparison."""
