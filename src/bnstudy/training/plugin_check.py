"""A protocol's plugins checked before any trial trains: ``bnstudy validate`` and ``run`` call
:func:`check_plugins` (through :func:`bnstudy.study.load`).

- The ``trial:`` function is imported and found (a protocol with one trains as that
  function says, so the rest of this check, which is about the built-in trial, is skipped).
- Every combination of the protocol's networks that involves a plugin (its architecture or
  its head, with the head and architecture options each combination sets) is built for its
  dataset's input shape and class count and put through the built-in trial on a batch of 2
  random inputs (a BatchNorm in train mode needs 2), on the CPU: one forward pass (logits of
  shape ``(2, num_classes)``), one backward pass, and the whole evaluation (PreciseBN, the BN
  fold check, the train/eval gap, the dead-unit metrics' search for the head's hidden ReLU
  units, every test metric). A network that fails any of it is one line naming the
  architecture, the head and the error, found in seconds instead of after a run.
- A plugin head applies the dropout rate and BN momentum its rows record: where it does
  not take the option (``register_head(..., options=...)``) the row records the default
  (dropout 0, momentum 0.1), so a head with a hard-coded ``nn.Dropout(0.3)`` that does not
  declare ``dropout`` is refused, as is one that takes the option and builds another rate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from bnstudy.data import Dataset, input_shape, num_classes
from bnstudy.models import architecture_info, build_model
from bnstudy.spec import head_options, plugins, trial_function
from bnstudy.spec.errors import ProtocolError
from bnstudy.spec.trial import Trial
from bnstudy.training import train

if TYPE_CHECKING:
    from bnstudy.spec.protocol import Protocol

#: Inputs per split of the check's batch: a BatchNorm in train mode needs 2.
BATCH = 2


def check_plugins(protocol: Protocol, source: str) -> None:
    """Raise :class:`ProtocolError` (one line, ``source`` first) for a ``trial:`` function
    that cannot be found, or a plugin network that fails the built-in trial's passes (see
    the module docstring)."""
    if protocol.trial is not None:
        try:
            trial_function.load(trial_function.resolve(protocol.trial, protocol.source_dir))
        except plugins.PluginError as exc:
            raise ProtocolError(f"{source}: {exc}") from None
        return
    for trial in plugin_networks(protocol):
        try:
            check_network(trial, protocol.dataset_options(trial.dataset))
        except Exception as exc:  # noqa: BLE001 - any failure of the user's network is the user's
            shape = input_shape(trial.dataset, protocol.dataset_options(trial.dataset))
            raise ProtocolError(
                f"{source}: architecture {trial.architecture!r} with head {trial.head!r}, "
                f"on a batch of {BATCH} inputs of shape {shape} ({trial.dataset!r}): "
                f"{plugins.gist(exc)}"
            ) from None


def plugin_networks(protocol: Protocol) -> Iterator[Trial]:
    """A trial per distinct network of ``protocol`` that a plugin makes (its architecture,
    its head or both): the architecture with its options, the head with the options it
    takes, the dataset (its input shape and classes)."""
    seen = set()
    for combo in protocol.combinations():
        arch, head = combo["architecture"], combo["head"]
        if architecture_info(arch).module is not None and head in head_options.BUILTIN:
            continue  # bnstudy's own networks: tested with bnstudy
        takes = tuple(combo[o] for o in head_options.options_of(head))
        key = (arch, combo["arch_options"], head, takes, combo["dataset"])
        if key not in seen:
            seen.add(key)
            yield Trial(seed=0, **combo)


def check_network(trial: Trial, data_options: dict[str, Any]) -> None:
    """Build ``trial``'s network and put it through the built-in trial's passes on a batch of
    :data:`BATCH` random inputs (see the module docstring); raises what fails."""
    trial = dataclasses.replace(trial, batch_size=BATCH, precision="fp32")
    data = _tiny_dataset(
        input_shape(trial.dataset, data_options), num_classes(trial.dataset, data_options)
    )
    with torch.random.fork_rng(devices=[]):  # the parent's own random state stays as it was
        torch.manual_seed(0)
        model = build_model(
            trial.architecture,
            trial.head,
            data.input_shape,
            data.num_classes,
            init_seed=trial.stream_seed,
            options=trial.settings(),
            architecture_options=trial.architecture_options,
        )
        _check_recorded_options(trial, model.head)
        model.train()
        logits = model(data.x_train)
        expected = (BATCH, data.num_classes)
        if tuple(logits.shape) != expected:
            raise ValueError(f"logits of shape {tuple(logits.shape)}; expected {expected}")
        nn.functional.cross_entropy(logits, data.y_train).backward()
        train._evaluate(trial, model, data, data.x_train, "cpu", {})


def _tiny_dataset(shape: tuple[int, ...], classes: int) -> Dataset:
    generator = torch.Generator().manual_seed(0)

    def inputs() -> torch.Tensor:
        return torch.randn((BATCH, *shape), generator=generator)

    labels = torch.arange(BATCH) % classes
    counts = torch.bincount(labels, minlength=classes).tolist()
    return Dataset(
        x_train=inputs(),
        y_train=labels,
        x_test=inputs(),
        y_test=labels,
        num_classes=classes,
        input_shape=tuple(shape),
        class_counts=counts,
        x_val=inputs(),
        y_val=labels,
    )


def _check_recorded_options(trial: Trial, head: nn.Module) -> None:
    """The head's dropout rates and BN momenta are those its row records (see the module
    docstring); built-in heads are tested with bnstudy."""
    if trial.head in head_options.BUILTIN:
        return
    takes = head_options.options_of(trial.head)
    defaults = head_options.DEFAULTS
    rates = {
        m.p for m in head.modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0
    }
    for rate in sorted(rates - {trial.dropout}):
        if "dropout" not in takes:
            raise ValueError(
                f"the head applies dropout {rate:g} but does not take the option 'dropout', "
                f"so its rows would record dropout = {defaults['dropout']:g}; declare it "
                f"(register_head({trial.head!r}, options=('dropout', ...))) and build the "
                "dropout from that keyword"
            )
        raise ValueError(
            f"the head applies dropout {rate:g} at dropout = {trial.dropout:g}; build the "
            "dropout from the keyword 'dropout', which its rows record"
        )
    momentum = trial.bn_momentum if "bn_momentum" in takes else defaults["bn_momentum"]
    norms = [m for m in head.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        if norm.momentum != momentum:
            declared = "" if "bn_momentum" in takes else " (it does not take 'bn_momentum')"
            raise ValueError(
                f"the head's {type(norm).__name__} has momentum {norm.momentum} but its rows "
                f"record bn_momentum = {momentum:g}{declared}; take the option "
                "'bn_momentum' and build the norm from that keyword"
            )
