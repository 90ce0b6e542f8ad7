"""Benchmarks: `python -m bench` runs every `bench/*_bench.py`; `python -m bench NAME` one of them."""
