"""Benchmarks: each prints a table, writes JSON, and compares against ceilings it measures."""
