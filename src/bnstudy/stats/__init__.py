"""Estimands from a results table and a plain design description (``bnstudy.spec.design.Design``):
paired mixed-model effects with prediction intervals for a new condition, equivalence,
heterogeneity, multiplicity, moderator contrasts and slopes, tuned comparisons, robustness,
failure rates and seed planning. Imports neither torch nor pydantic."""

from bnstudy.stats.analysis import Analysis, analyze
from bnstudy.stats.mixed import MixedFit, fit_mixed
from bnstudy.stats.planning import plan_seeds

__all__ = ["Analysis", "MixedFit", "analyze", "fit_mixed", "plan_seeds"]
