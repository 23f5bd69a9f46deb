"""Capability execution under the signed catalog: steps around the registry's invoker."""
