"""Benchmarks of the generated service against raw arq and a bare endpoint: `python -m bench`.

Optional: nothing in src/ or tests/ imports this folder and the image leaves it out; delete it
(and the README's "Benchmark" section) if the project has no use for it.
"""
