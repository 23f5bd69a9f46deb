"""Tests of consuming."""
