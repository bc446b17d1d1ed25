"""The field types and limits every section of a protocol shares.

Every model of a protocol is strict (:data:`STRICT`: unknown keys refused, frozen), and a
list-valued field (factor levels, seeds) refuses a repeated value (:func:`check_unique`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field

from bnstudy.spec.errors import show
from bnstudy.spec.trial_function import TRIAL_FUNCTION

STRICT = ConfigDict(extra="forbid", frozen=True)

#: The results table stores integers as int64.
INT64_MAX = 2**63 - 1
#: A protocol expanding to more trials than this is refused unless ``max_trials`` is raised.
DEFAULT_MAX_TRIALS = 100_000
#: Past this many trials ``validate`` and ``run`` warn (a typo in a seed count, say).
WARN_TRIALS = 10_000

Name = Annotated[str, Field(min_length=1, max_length=200)]
Ratio = Annotated[float, Field(ge=1, le=1e9, allow_inf_nan=False)]
PositiveInt = Annotated[int, Field(ge=1, le=INT64_MAX)]
NonNegativeInt = Annotated[int, Field(ge=0, le=INT64_MAX)]
Seed = Annotated[int, Field(ge=0, le=INT64_MAX)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]
OpenFraction = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]
#: A BatchNorm momentum: the weight of the newest batch in the running statistics.
Momentum = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
#: A study name is also its file name (results, report), so it must be a safe one.
STUDY_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
#: A plugin: a ``.py`` file or a dotted module name.
PLUGIN = r"^(?:[^\n]+\.py|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)$"


def _trial_function_text(value: Any) -> Any:
    if isinstance(value, str) and not re.fullmatch(TRIAL_FUNCTION, value):
        raise ValueError(
            "expected CODE:FUNCTION, a .py file (relative to the protocol) or a module, then "
            f"a function's name: my_trial.py:run, mylab.train:run; got {show(value)}"
        )
    return value


#: A protocol's ``trial:`` (see :mod:`bnstudy.spec.trial_function`).
TrialFunctionText = Annotated[str, BeforeValidator(_trial_function_text)]


def as_list(value: Any) -> Any:
    """Factors accept a single value or a list of values."""
    return value if isinstance(value, list) else [value]


def check_unique(values: list[Any]) -> list[Any]:
    """Refuse repeated values (linear time: factor levels and seeds are hashable scalars)."""
    seen: set[Any] = set()
    for v in values:
        if v in seen:
            raise ValueError(f"duplicate value {v!r} in {show(values)}")
        seen.add(v)
    return values
