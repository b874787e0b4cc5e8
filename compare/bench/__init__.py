"""Benchmarks: commands that train and time things and print figures (`python -m compare.bench`).

They may read the report's modules; the report never imports these.
"""
