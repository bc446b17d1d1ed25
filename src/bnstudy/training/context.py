"""The trial-function contract: what a protocol's own trial function (``trial: mylab.train:run``)
receives, what it returns, and how bnstudy turns that into a trial's row.

A trial function is ``run(trial, ctx) -> outcome``:

- ``trial``: the resolved settings, a :class:`~bnstudy.spec.trial.Trial` (a standard-library
  dataclass: ``trial.lr``, ``trial.optimizer``, ``trial.seed``, ... every factor's level).
- ``ctx``: a :class:`TrialContext`: the device to train on, the trial's data (the dataset's
  cached pool after the trial's subsetting and imbalance, as the built-in trial gets it) and
  its paired random streams. Draw every random number from a stream (``ctx.generator(name)``
  or ``ctx.seed(name)``): a stream's seed depends on the trial's pairing block and the
  stream's name only, so the arms of a block (``sgd`` and ``adamw``, say) draw the same data
  order and initial weights, which is what makes their difference paired. The built-in
  trial's streams are ``subset`` (the training subset, already drawn in ``ctx.data``),
  ``order/<epoch>`` (pass ``epoch``'s permutation: ``torch.randperm(n,
  generator=ctx.generator(f"order/{epoch}"))`` is the built-in ``instance`` sampler's) and
  ``init/<module>`` (module ``<module>``'s initial weights: ``ctx.model()`` draws them, and
  loads the pre-training stage's body over them where the trial has one); any
  other name is a new independent stream. Torch's global generator is seeded from the stream
  ``torch_global`` before the function runs, so unseeded torch draws (dropout) repeat too.
- the outcome: a mapping of metric names to numbers (status ``ok``), or a
  :class:`TrialOutcome` (metrics, a status, optional curves and per-class lists), or a
  :class:`~bnstudy.training.trial_result.TrialResult` (what the built-in trial returns).

bnstudy does the rest: expansion, validation, execution (loky, Dask, GPU slots, time limits:
:mod:`bnstudy.execution.worker` calls :func:`run_function`), resume, the store, statistics
and the report. The metrics land in the results table as columns; a catalogue metric the
function does not return is NaN in its rows. To analyse a metric of your own, declare it
with :func:`bnstudy.catalogue.register_metric` in the same code. An exception is the trial's
``failed`` row, with its cause; ``diverged`` and ``failed`` trials score as the analysis's
``failed_score`` says.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from bnstudy.catalogue import (
    COLLAPSED,
    DERIVED_METRICS,
    DIVERGED,
    FAILED,
    METRIC_NAME,
    METRICS,
    OK,
    RECORDED_METRICS,
)
from bnstudy.results_format import trial_row
from bnstudy.spec.trial import Trial
from bnstudy.training.trial_result import TrialResult, now

if TYPE_CHECKING:
    from bnstudy.data import Dataset
    from bnstudy.models import Classifier

#: The statuses a trial function may give (timeouts and out-of-memory are bnstudy's to say).
STATUSES = (OK, DIVERGED, COLLAPSED, FAILED)
#: The stream torch's global generator is seeded from before a trial function runs.
TORCH_GLOBAL = "torch_global"


@dataclasses.dataclass(frozen=True)
class TrialContext:
    """What a trial function gets besides its settings: where to train, its data, its
    paired random streams (see the module docstring)."""

    trial: Trial
    #: ``cpu``, ``cuda``, ``cuda:1``, ``mps``: the device bnstudy leased for this trial.
    device: str
    #: The protocol's options for the trial's dataset (``datasets:``), resolved.
    data_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: The pre-training stage's loss of each network :meth:`model` built (a list, so the
    #: frozen context can note it): :func:`run_function` records it in the row.
    _stage_loss: list[float] = dataclasses.field(
        default_factory=list, init=False, repr=False, compare=False
    )

    def seed(self, stream: str) -> int:
        """The 63-bit seed of stream ``stream``: the same in every arm of the trial's pairing
        block, independent of every other stream's."""
        return self.trial.stream_seed(stream)

    def generator(self, stream: str, device: str = "cpu") -> torch.Generator:
        """A ``torch.Generator`` on ``device`` seeded by stream ``stream`` (a new one per
        call: two calls with one name draw the same numbers)."""
        return torch.Generator(device=device).manual_seed(self.seed(stream))

    @functools.cached_property
    def data(self) -> Dataset:
        """The trial's :class:`~bnstudy.data.Dataset` (CPU tensors ``x_train``, ``y_train``,
        ``x_val``, ``y_val``, ``x_test``, ``y_test``, ``class_counts``, ``num_classes``,
        ``input_shape``): the dataset's cached pool with the trial's training subset, drawn
        from stream ``subset``, as the built-in trial trains on it. Built on first use."""
        from bnstudy.data import build_dataset

        return build_dataset(self.trial, self.data_options)

    def init_seed(self, module: str) -> int:
        """The seed of module ``module``'s initial weights (stream ``init/<module>``), as
        :func:`bnstudy.models.build_model` takes it: arms share the weights of every layer
        they have in common."""
        return self.seed("init/" + module)

    def model(self) -> Classifier:
        """The trial's ``architecture`` with its ``head`` (and their options), initialised
        from the trial's streams, on :attr:`device`, its body the pre-trained one where the
        trial's ``pretrain`` names a stage: the network the built-in trial trains
        (:func:`bnstudy.training.train.start_model`). The stage's loss goes to the row's
        ``pretrain_train_loss``."""
        from bnstudy.training.train import start_model

        model, stage_loss = start_model(self.trial, self.data, self.device)
        self._stage_loss.append(stage_loss)
        return model


@dataclasses.dataclass(frozen=True)
class TrialOutcome:
    """What a trial function may return when a mapping of metrics is not enough.

    ``status``: ``ok``, ``diverged`` (training blew up: its metrics are not analysed as
    measured), ``collapsed`` (measured, but one class predicted almost everywhere) or
    ``failed`` (``error`` says why). ``curves``: named series (a column ``curve_<name>``;
    ``train_loss`` is the one the report plots). ``per_class``: named per-class lists (a
    column ``class_<name>``; ``class_counts`` defaults to the training counts of
    ``ctx.data`` when the function used it).
    """

    metrics: Mapping[str, float]
    status: str = OK
    error: str | None = None
    curves: Mapping[str, list[float]] = dataclasses.field(default_factory=dict)
    per_class: Mapping[str, list[float] | list[int]] = dataclasses.field(default_factory=dict)


TrialFunction = Callable[[Trial, TrialContext], Any]


def run_function(
    function: TrialFunction,
    trial: Trial,
    device: str = "cpu",
    data_options: Mapping[str, Any] | None = None,
) -> TrialResult:
    """Run ``function(trial, ctx)`` and return its outcome as a :class:`TrialResult`, timed
    (``wall_s`` unless it returns one). Exceptions propagate (the worker records them as
    ``failed``); an outcome that breaks the contract raises ``TypeError``/``ValueError``
    naming what is wrong."""
    started_at, start_s = now(), time.perf_counter()
    ctx = TrialContext(trial, device, dict(data_options or {}))
    torch.manual_seed(ctx.seed(TORCH_GLOBAL))
    returned = function(trial, ctx)
    wall_s = time.perf_counter() - start_s
    if isinstance(returned, TrialResult):
        return returned
    outcome = returned if isinstance(returned, TrialOutcome) else TrialOutcome(returned)
    if outcome.status not in STATUSES:
        raise ValueError(
            f"the trial function returned status {outcome.status!r}; allowed: {', '.join(STATUSES)}"
        )
    metrics = _checked_metrics(outcome.metrics, trial)
    metrics.setdefault("wall_s", wall_s)
    if ctx._stage_loss:  # it trained a pre-trained body, as the built-in trial records
        metrics.setdefault("pretrain_train_loss", ctx._stage_loss[0])
    per_class = {name: list(values) for name, values in outcome.per_class.items()}
    if "data" in ctx.__dict__:  # built: its training counts tell the analysis the classes
        per_class.setdefault("class_counts", list(ctx.data.class_counts))
    error = outcome.error
    if outcome.status == FAILED and not error:
        error = "the trial function returned status 'failed'"
    return TrialResult(
        status=outcome.status,
        error=error,
        metrics=metrics,
        curves={name: [float(v) for v in values] for name, values in outcome.curves.items()},
        per_class=per_class,
        started_at=started_at,
        ended_at=now(),
        device=device,
    )


def _checked_metrics(returned: Any, trial: Trial) -> dict[str, float]:
    """The returned metrics as floats; a name that is no metric column (a setting's, the
    row's own, or not a name) or a value that is no number raises."""
    if not isinstance(returned, Mapping):
        raise TypeError(
            "the trial function must return a mapping of metrics, a TrialOutcome or a "
            f"TrialResult; got {type(returned).__name__}"
        )
    taken = _row_columns(trial)
    metrics = {}
    for name, value in returned.items():
        if not isinstance(name, str) or not _is_name(name):
            raise ValueError(f"metric name {name!r}: expected letters, digits and '_'")
        if name in taken:
            raise ValueError(
                f"metric {name!r} would overwrite the results table's column of that name; "
                "rename it"
            )
        if isinstance(value, str | bytes | bool):
            raise TypeError(f"metric {name!r}: expected a number, got {value!r}")
        try:
            metrics[name] = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"metric {name!r}: expected a number, got {value!r}") from None
    return metrics


def _is_name(name: str) -> bool:
    return re.fullmatch(METRIC_NAME, name) is not None


def _row_columns(trial: Trial) -> set[str]:
    """The columns of a results row a trial function's metric may not take: the settings,
    the outcome, how it ran, the per-class and curve lists
    (:func:`bnstudy.results_format.trial_row`) and the metrics the analysis derives."""
    empty = TrialResult.failed("", started_at=now(), device="cpu")
    measured = (set(METRICS) | set(RECORDED_METRICS)) - set(DERIVED_METRICS)
    return set(trial_row(trial, empty)) - measured
