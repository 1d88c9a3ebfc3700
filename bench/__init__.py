"""Reproducible benchmarks: each prints hcsync's figures beside a baseline measured in the same run."""
