"""Benchmarks (not tests), run by ``connector-fleet bench``: publish, fleet, consume.
Each runs several times in fresh processes (``repeat``) and reports median (min–max)
(``stats``); method, baselines and peers in docs/benchmarks.md."""
