"""One trial: everything that determines a training run's outcome, and the ids derived from it.

A trial's id is a hash of its resolved settings, so resume, deduplication and the pairing of
arms are derived, never stored by hand. The standard library only (no pydantic, yaml, numpy
or torch): a worker, a table reader or a scheduler can name and pair trials without them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

#: The factor that defines the arms of a pairing block. Everything else is the condition.
TREATMENT = "head"
#: The derived column naming the arm when head options belong to the arms (see
#: ``Protocol.arm_options``): the head plus those options, e.g. ``bn[bn_momentum=0.01]``.
ARM = "arm"
#: The ``pretrain`` level of a body trained from its random initialisation only.
NO_PRETRAIN = "none"
#: The learning-rate factor: averaged over, it mixes a head's effect with its tolerance of a
#: bad learning rate, so ``validate`` warns when it varies without being tuned.
LEARNING_RATE = "lr"


@dataclasses.dataclass(frozen=True)
class Trial:
    """Everything that determines one training run's outcome.

    Its settings are the factors of :class:`bnstudy.spec.factors.Factors` (one level each,
    at the same defaults), the ``seed`` and the settings expansion derives (``arm_options``,
    ``arch_options``, ``data_options``, ``pretrain_stage``); tests/spec keeps them in step.
    """

    seed: int
    architecture: str
    head: str
    dataset: str
    imbalance_ratio: float
    train_per_class: int
    epochs: int
    batch_size: int
    lr: float
    optimizer: str
    weight_decay: float
    # Settings added after the first release have defaults: a trial at a default is the
    # trial an older protocol meant, and its id must not change (see ``identity``).
    imbalance_profile: str = "exp"
    step_fraction: float = 0.5
    steps: int = 0
    lr_schedule: str = "cosine"
    warmup_frac: float = 0.0
    #: Epochs of a ``step`` schedule's decays, comma separated ("": 50% and 75% of the steps
    #: after warm-up, the first release's); see :func:`bnstudy.training.loop.lr_factor`.
    lr_milestones: str = ""
    lr_decay: float = 0.1
    label_smoothing: float = 0.0
    grad_clip: float = 0.0
    sampler: str = "instance"
    # Head options (bnstudy.spec.head_options); a head that does not take one holds its
    # default.
    hidden_width: int = 0
    dropout: float = 0.0
    dropout_at: str = "before_norm"
    bn_momentum: float = 0.1
    #: The head options of this trial that belong to its arm rather than its block, comma
    #: separated ("" for none): set on a head the protocol's other heads do not take (``bn``
    #: at ``bn_momentum`` 0.01 against ``plain``), they are left out of the block, so the
    #: one control trial of a seed pairs with every such arm. See :meth:`Protocol.arm_options`.
    arm_options: str = ""
    #: The architecture's options not at their defaults, as canonical JSON ("" for none).
    arch_options: str = ""
    #: The dataset options that change the data, as canonical JSON ("" at their defaults).
    data_options: str = ""
    #: The ``pretrain`` stage's name: a label only, left out of the id (``pretrain_stage``
    #: names the stage by its settings, so renaming a stage keeps its results).
    pretrain: str = NO_PRETRAIN
    #: The pre-training stage's settings as canonical JSON ("" without pre-training).
    pretrain_stage: str = ""
    #: ``fp32``, or ``bf16``: the forward passes (training and evaluation) run under
    #: ``torch.autocast`` in bfloat16, losses and metrics in float32 (see
    #: :func:`bnstudy.training.loop.autocast`). At ``fp32`` it is left out of the id.
    precision: str = "fp32"

    def settings(self) -> dict[str, Any]:
        """Every setting (the factor columns of the results table)."""
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        """The settings that name the trial: every setting except those at their defaults.

        Adding a setting with a default therefore leaves every existing trial id, block and
        random stream unchanged, and a results table resumes with nothing to re-run.
        """
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in _LABELS
            and (f.default is dataclasses.MISSING or getattr(self, f.name) != f.default)
        }

    @property
    def trial_id(self) -> str:
        return _digest(self.identity())

    @property
    def architecture_options(self) -> dict[str, Any]:
        """The architecture options not at their defaults (``arch_options`` read back)."""
        return json.loads(self.arch_options) if self.arch_options else {}

    @property
    def arm(self) -> str:
        """The arm: the head, with the options in ``arm_options``, e.g. ``bn[bn_momentum=0.01]``."""
        return arm_of(self.settings())

    def _block_settings(self) -> dict[str, Any]:
        """The identity less the treatment: the head and the options that belong to its arm."""
        settings = self.identity()
        del settings[TREATMENT]
        for name in _split(self.arm_options):
            settings.pop(name, None)
        settings.pop("arm_options", None)
        return settings

    @property
    def block_id(self) -> str:
        """Shared by trials that differ only in the treatment (the arms of one comparison)."""
        return _digest(self._block_settings())

    @property
    def condition_id(self) -> str:
        """Shared by all blocks of one design cell (everything but treatment and seed)."""
        settings = self._block_settings()
        del settings["seed"]
        return _digest(settings)

    def stream_seed(self, stream: str) -> int:
        """An independent 63-bit seed for one random stream of this trial.

        Derived from the block's settings and the stream name only, so arms of one block
        draw identical subsets, data orders and initial weights for their shared layers.
        """
        settings = self._block_settings()
        return int(_digest({"block": settings, "stream": stream}), 16) >> 1


def _split(names: str) -> list[str]:
    return [n for n in names.split(",") if n]


def _show_level(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def arm_of(settings: Mapping[str, Any]) -> str:
    """The arm of a trial from its settings (a results row will do): its ``head``, followed
    by the options named in its ``arm_options`` with their values, e.g.
    ``bn[bn_momentum=0.01]``. Rows without ``arm_options`` (older tables) are their head."""
    names = _split(settings.get("arm_options") or "")
    if not names:
        return str(settings[TREATMENT])
    shown = ",".join(f"{n}={_show_level(settings[n])}" for n in names)
    return f"{settings[TREATMENT]}[{shown}]"


#: Trial fields that only label another field's content, and so are no part of its id.
_LABELS = frozenset({"pretrain"})


def _digest(obj: Any) -> str:
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
