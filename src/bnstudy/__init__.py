"""bnstudy: paired, many-seed, mixed-effects studies of classifier head variants."""

__version__ = "0.1.0"
