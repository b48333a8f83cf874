"""One composite PTransform per pipeline stage, over pure helpers."""
