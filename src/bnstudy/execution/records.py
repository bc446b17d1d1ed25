"""What a run records, gathered where only the parent knows it: each trial's row and the
run's provenance, in the format :mod:`bnstudy.results_format` owns.

The format names the columns and the metadata keys; this module fills them in with what the
execution knows: the checkpoint a pre-trained trial started from, the installed versions,
this machine and its GPUs, the plugins' hashes, and the files each dataset is read from.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from collections.abc import Mapping
from typing import Any

import joblib

from bnstudy import __version__
from bnstudy.data import DatasetError, source_fingerprint
from bnstudy.execution.devices import cpu_model
from bnstudy.results_format import Provenance
from bnstudy.results_format import trial_row as format_row
from bnstudy.spec import grow, head_options
from bnstudy.spec.errors import ProtocolError
from bnstudy.spec.protocol import Protocol
from bnstudy.spec.trial import Trial
from bnstudy.training.trial_result import TrialResult


def trial_row(trial: Trial, result: TrialResult, **how: Any) -> dict[str, Any]:
    """The results-table row for one trial (:func:`bnstudy.results_format.trial_row`, which
    takes ``how`` it ran), with the cached body it started from (``pretrain_checkpoint``, ""
    without pre-training)."""
    return format_row(trial, result, pretrain_checkpoint=_checkpoint_key(trial), **how)


def _checkpoint_key(trial: Trial) -> str:
    """The cached body the trial started from (:mod:`bnstudy.training.pretrain`), "" without
    pre-training. Imported only then: the module needs torch."""
    if not trial.pretrain_stage:
        return ""
    from bnstudy.training.pretrain import checkpoint_key

    return checkpoint_key(trial)


def torch_version() -> str:
    """The installed torch's version, read from its metadata: importing torch for it would
    cost the parent about a second (the same string as ``torch.__version__``)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch.__version__
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def provenance(
    protocol: Protocol, device: str, execution: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """How the results were made, as the results' metadata: protocol text and hash, versions,
    machine, the run's execution settings (devices, slots, packing, determinism, time limit),
    the files each dataset is read from (``dataset_sources``; ProtocolError when they are
    gone) and the levels grown past the tuning grid's edges (``grown_levels``, only when
    the protocol has some: :mod:`bnstudy.spec.grow`)."""
    plugins = recorded_options = None
    declared: dict[str, Any] = {}
    if protocol.plugins:  # their code makes the numbers as much as bnstudy's does
        from bnstudy.spec import plugins as plugin_module

        plugins = plugin_module.fingerprints(protocol.plugin_entries())
        # what their heads take, for reading the results where the plugins are not installed
        recorded_options = {h: head_options.options_of(h) for h in protocol.factors.head}
        declared = plugin_module.declared(protocol.factors.architecture)  # and the rest
    return Provenance(
        protocol=protocol.source_text,
        protocol_sha256=protocol.sha256,
        protocol_name=protocol.name,
        versions=versions(),
        machine=machine(device),
        execution=dict(execution or {}),
        dataset_sources=dataset_sources(protocol),
        plugins=plugins,
        head_options=recorded_options,
        **declared,
        grown_levels=grow.to_record(protocol.grown) if protocol.grown else None,
    ).metadata()


def versions() -> dict[str, str]:
    """bnstudy's version and its libraries' (torch's without importing it)."""
    import numpy
    import pandas
    import pyarrow

    return {
        "bnstudy": __version__,
        "torch": torch_version(),
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
        "joblib": joblib.__version__,
    }


def machine(device: str) -> dict[str, str]:
    """This machine: platform, CPU, the run's ``device`` (comma-separated) and GPU names."""
    found = {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": str(os.cpu_count()),
        "device": device,
    }
    gpus = [d for d in device.split(",") if d.startswith("cuda")]
    if gpus:  # names only: no CUDA context in the parent
        import torch

        if torch.cuda.is_available():
            found["gpus"] = ", ".join(sorted({torch.cuda.get_device_name(d) for d in gpus}))
    return found


def dataset_sources(protocol: Protocol) -> dict[str, Any]:
    """Which files each dataset is read from (resolved path, size, mtime; None: generated),
    so a table says what it was trained on; the pools are cached under the same
    fingerprints. ProtocolError when a file is gone."""
    sources = {}
    for name in protocol.factors.dataset:
        try:
            sources[name] = source_fingerprint(name, protocol.dataset_options(name))
        except DatasetError as exc:
            raise ProtocolError(f"datasets.{name}: {exc}") from None
    for stage in [s for s in protocol.factors.pretrain if s in protocol.pretraining]:
        try:  # the bodies' data: a stage may have options of its own
            sources[f"pretraining.{stage}"] = source_fingerprint(
                protocol.pretraining[stage].dataset, protocol.stage_options(stage)
            )
        except DatasetError as exc:
            raise ProtocolError(f"pretraining.{stage}: {exc}") from None
    return sources
