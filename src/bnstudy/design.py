"""Deprecated alias of bnstudy.spec.design, kept for one release."""

from __future__ import annotations

from bnstudy.spec.design import Design, HypothesisDesign, MetricDesign, Transform

__all__ = ["Design", "HypothesisDesign", "MetricDesign", "Transform"]
