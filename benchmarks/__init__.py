"""Benchmarks of prospect against peer tools (run from the repository root: `make bench`, `make bench-illumination`).

Not part of the installed package.
"""
