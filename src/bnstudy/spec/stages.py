"""The ``pretraining:`` section: named stages that train a body before it is fine-tuned."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ValidationInfo, field_validator

from bnstudy.spec.errors import UnknownName
from bnstudy.spec.fields import STRICT, Name, NonNegativeFloat, PositiveFloat, PositiveInt


class PretrainStage(BaseModel):
    """One pre-training stage: the body is trained on ``dataset`` first, then fine-tuned.

    The stage trains with a ``plain`` head (GAP -> FC), the one head that favours no arm
    (it adds nothing before the FC), with a cosine schedule, the ``instance`` sampler and
    balanced data, for exactly ``steps`` optimiser steps; the head is thrown away.
    ``options`` are the stage dataset's options; without them, those of the protocol's
    ``datasets:`` section for that dataset. A field added here later must be left out of
    :meth:`Protocol.stage_identity` at its default, or cached bodies and trial ids change.
    """

    model_config = STRICT

    dataset: Name
    options: dict[str, Any] | None = None
    steps: PositiveInt
    lr: PositiveFloat = 0.05
    batch_size: PositiveInt = 64
    train_per_class: PositiveInt = 500
    optimizer: Literal["sgd", "adamw"] = "sgd"
    weight_decay: NonNegativeFloat = 5e-4

    @field_validator("dataset")
    @classmethod
    def _registered(cls, value: str, info: ValidationInfo) -> str:
        known = (info.context or {}).get("dataset")
        if known is not None and value not in known:
            raise UnknownName(0, value, known)
        return value
