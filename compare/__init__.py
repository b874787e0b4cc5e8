"""Benchmarks every trained model of an experiment on its held-out test split."""
