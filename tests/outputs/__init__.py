"""Tests of the outputs layer."""
