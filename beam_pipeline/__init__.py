"""videolabel: label every video (and frame) of an archive with a Beam pipeline."""

__version__ = "0.1.0"
