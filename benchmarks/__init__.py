"""Benchmark scripts: ``python -m benchmarks.<name> --help``. Each prints its figures and the machine."""
