"""Benchmarks: they print figures (compared as ratios within one run), they never assert timings."""
