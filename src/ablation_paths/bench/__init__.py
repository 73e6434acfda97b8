"""Benchmarks: datasets with known ground truth, comparison methods and metrics."""
