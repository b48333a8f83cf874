"""Tests of the job layer."""
