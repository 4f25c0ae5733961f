"""unipelt: an experiment runner for parameter-efficient language-model tuning (UniPELT and friends)."""

__version__ = "0.1.0"
