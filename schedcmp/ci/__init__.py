"""Baselines for visual-regression checks: create and check."""
