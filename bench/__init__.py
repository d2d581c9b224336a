"""Benchmarks: ``python -m bench <name> [args]`` runs ``bench/<name>.py``; no name lists them.

Each benchmark prints figures, as ratios against a baseline measured in the same run, and
asserts nothing about time.
"""
