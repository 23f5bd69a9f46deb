"""Benchmarks (not tests), run by ``connector-fleet bench``: publish, fleet, consume."""
