"""Tests of the transforms layer."""
