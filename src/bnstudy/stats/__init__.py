"""Estimands from a results table: paired mixed-model effects, equivalence, heterogeneity,
multiplicity, robustness, failure rates and seed planning. Imports no torch."""

from bnstudy.stats.analysis import Analysis, analyze
from bnstudy.stats.mixed import MixedFit, fit_mixed
from bnstudy.stats.planning import plan_seeds

__all__ = ["Analysis", "MixedFit", "analyze", "fit_mixed", "plan_seeds"]
