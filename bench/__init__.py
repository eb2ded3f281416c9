"""Benchmarks of runwarden at scale: ``python -m bench`` (or ``make bench``) runs them all.

See BENCHMARKS.md for what is measured, the latest figures and how to rerun.
"""
