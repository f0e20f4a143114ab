"""Typed schemas for the sections of params.yaml (assembled in pipeline.params.load)."""
