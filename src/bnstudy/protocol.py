"""Deprecated alias of bnstudy.spec.protocol, kept for one release.

The protocol now lives in :mod:`bnstudy.spec`: the model and its expansion in
``spec.protocol``, its sections in ``spec.factors``, ``spec.stages`` and
``spec.analysis_settings``, the field types in ``spec.fields``, errors in ``spec.errors``,
reading YAML in ``spec.loading`` and trials in ``spec.trial``. Import from there.
"""

from __future__ import annotations

from bnstudy.spec.analysis_settings import (
    DEFAULT_TRANSFORMS,
    AnalysisSettings,
    Bootstrap,
    MetricSpec,
)
from bnstudy.spec.errors import ProtocolError
from bnstudy.spec.factors import Factors
from bnstudy.spec.fields import (
    DEFAULT_MAX_TRIALS,
    INT64_MAX,
    PLUGIN,
    STUDY_NAME,
    WARN_TRIALS,
    Fraction,
    Momentum,
    Name,
    NonNegativeFloat,
    NonNegativeInt,
    OpenFraction,
    PositiveFloat,
    PositiveInt,
    Ratio,
    Seed,
)
from bnstudy.spec.loading import load_protocol, parse_protocol, plugins_of, protocol_fields
from bnstudy.spec.protocol import Protocol
from bnstudy.spec.stages import PretrainStage
from bnstudy.spec.trial import ARM, NO_PRETRAIN, TREATMENT, Trial, arm_of

__all__ = [
    "ARM",
    "DEFAULT_MAX_TRIALS",
    "DEFAULT_TRANSFORMS",
    "INT64_MAX",
    "NO_PRETRAIN",
    "PLUGIN",
    "STUDY_NAME",
    "TREATMENT",
    "WARN_TRIALS",
    "AnalysisSettings",
    "Bootstrap",
    "Factors",
    "Fraction",
    "MetricSpec",
    "Momentum",
    "Name",
    "NonNegativeFloat",
    "NonNegativeInt",
    "OpenFraction",
    "PositiveFloat",
    "PositiveInt",
    "PretrainStage",
    "Protocol",
    "ProtocolError",
    "Ratio",
    "Seed",
    "Trial",
    "arm_of",
    "load_protocol",
    "parse_protocol",
    "plugins_of",
    "protocol_fields",
]
