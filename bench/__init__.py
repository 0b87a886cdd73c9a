"""The benchmarks (docs/benchmarks.md): scripts run as `python bench/NAME.py`.

They import each other as `bench.NAME` (each puts the repository first on sys.path), and mypy
checks them under those names.
"""
