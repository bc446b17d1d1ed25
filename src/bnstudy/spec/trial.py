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

#: The default treatment: the factor whose levels are the arms of a pairing block (a
#: protocol's ``treatment:`` names another; a trial holds it in ``Trial.treatment``).
#: Everything else is the condition.
TREATMENT = "head"
#: The derived column naming the arm (see :func:`arm_of`) when the treatment is not the head,
#: or when head options belong to the arms (``Protocol.arm_options``): e.g. ``adamw``,
#: ``dropout 0.3``, ``bn[bn_momentum=0.01]``.
ARM = "arm"
#: The ``pretrain`` level of a body trained from its random initialisation only.
NO_PRETRAIN = "none"
#: The learning-rate factor: averaged over, it mixes a head's effect with its tolerance of a
#: bad learning rate, so ``validate`` warns when it varies without being tuned.
LEARNING_RATE = "lr"
#: ``train_per_class`` of a trial that trains on its dataset's whole training pool (after the
#: validation split), unsubsampled and as unbalanced as the pool is: the protocol's ``all``.
#: Stored as 0, not as the string, so the setting stays an int (the results table's column
#: is int64, and integer levels keep their ids); no positive count can mean it.
ALL_TRAIN = 0


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
    #: Images of the largest class (``n_max`` of the imbalance profile); ``ALL_TRAIN`` (0): all.
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
    #: The factor whose levels are the arms (the protocol's ``treatment``): the block is the
    #: identity less this factor. At ``head`` it is left out of the id; any other treatment
    #: pairs differently, so draws other random streams: another trial, another id.
    treatment: str = TREATMENT
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
    #: The training loss (:mod:`bnstudy.training.losses`): ``ce``, left out of the id, or a
    #: long-tail remedy (``cb_reweight``, ``drw``, ``logit_adjusted``).
    loss: str = "ce"
    #: The protocol's own trial function as written (``mylab.train:run``, see
    #: :mod:`bnstudy.spec.trial_function`); "" (bnstudy's built-in trial) is left out of the id.
    trial_function: str = ""

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
        """The identity less the treatment: its factor (at a default it is not in the
        identity), the settings derived from that factor's level, and the options that
        belong to the arm."""
        settings = self.identity()
        for name in (self.treatment, *_DERIVED.get(self.treatment, ())):
            settings.pop(name, None)
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
        Arms whose layers differ in shape (an ``architecture`` or ``hidden_width``
        treatment) share the seeds, not the weights: a layer of the same name draws from the
        same stream.
        """
        settings = self._block_settings()
        return int(_digest({"block": settings, "stream": stream}), 16) >> 1


def _split(names: str) -> list[str]:
    return [n for n in names.split(",") if n]


def _show_level(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def arm_of(settings: Mapping[str, Any]) -> str:
    """The arm of a trial from its settings (a results row will do): its level of the
    treatment (:func:`level_label`; the ``head`` by default), followed by the options named
    in its ``arm_options`` with their values, e.g. ``bn[bn_momentum=0.01]``. Rows without
    ``treatment`` or ``arm_options`` (older tables) are their head."""
    factor = settings.get("treatment") or TREATMENT
    level = level_label(factor, settings[factor])
    names = _split(settings.get("arm_options") or "")
    if not names:
        return level
    shown = ",".join(f"{n}={_show_level(settings[n])}" for n in names)
    return f"{level}[{shown}]"


def level_label(factor: str, value: Any) -> str:
    """How a level of the treatment ``factor`` names its arm: a head as it is (``bn``), any
    other name as it is (``adamw``), a number or another value after its factor
    (``dropout 0.3``, ``batch_size 64``, ``lr_milestones 160,180``), so "dropout 0.3 −
    dropout 0" reads as what it is."""
    if factor == TREATMENT or (isinstance(value, str) and value[:1].isalpha()):
        return str(value)
    if factor == "train_per_class" and value == ALL_TRAIN:
        return f"{factor} all"
    if isinstance(value, int | float) and not isinstance(value, bool):
        # one text for 64 and 64.0 (a table column holding NaN is float)
        return f"{factor} {float(value):.12g}"
    return f"{factor} {value or 'default'}"


#: Trial fields that only label another field's content, and so are no part of its id.
_LABELS = frozenset({"pretrain"})
#: Settings derived from a factor's level (by expansion): they belong to the arm with it
#: when that factor is the treatment.
_DERIVED = {"architecture": ("arch_options",), "pretrain": ("pretrain_stage",)}


def _digest(obj: Any) -> str:
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
