"""Benchmarks of the generated service against raw arq and a bare endpoint: `python -m bench`."""
