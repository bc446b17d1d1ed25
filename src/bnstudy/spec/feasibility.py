"""Whether every trial of a protocol can train, checked before any does.

Beyond the schema: the dataset files exist and parse, each network accepts its data's input
shape, each dataset's pool holds ``train_per_class`` images per class (``all``: whatever it
holds) and each training set fills a batch; each pre-training stage used can train, and its
body fits every network that loads it. Such a problem would otherwise fail every trial at run
time, and again on every resume. The data and model checks are imported when called (the
datasets read their files, and comparing pre-trained bodies builds networks, with torch), so
importing this module costs nothing.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from bnstudy.spec.errors import ProtocolError
from bnstudy.spec.trial import ALL_TRAIN

if TYPE_CHECKING:
    from bnstudy.spec.protocol import Protocol


def check_feasible(protocol: Protocol, source: str) -> None:
    """Raise ProtocolError (one line) for a trial that cannot train (see the module)."""
    from bnstudy.data import (
        DatasetError,
        check_dataset,
        input_shape,
        pool_class_counts,
        training_counts,
    )
    from bnstudy.models import check_architecture_input

    combos = protocol.combinations()
    for name in dict.fromkeys(c["dataset"] for c in combos):
        options = protocol.dataset_options(name)
        try:
            check_dataset(name, options)
            shape, pool_counts = input_shape(name, options), pool_class_counts(name, options)
            pool_n = min(pool_counts)
        except DatasetError as exc:
            raise ProtocolError(f"{source}: datasets.{name}: {exc}") from None
        of_data = [c for c in combos if c["dataset"] == name]
        for arch in dict.fromkeys(c["architecture"] for c in of_data):
            try:
                check_architecture_input(arch, shape)
            except ValueError as exc:
                raise ProtocolError(
                    f"{source}: factors.architecture: {exc} (dataset {name!r}); leave the "
                    f"pair out with exclude: [{{architecture: {arch}, dataset: {name}}}]"
                ) from None
        settings = ("train_per_class", "imbalance_ratio", "imbalance_profile", "step_fraction")
        for key in dict.fromkeys(tuple(c[k] for k in (*settings, "batch_size")) for c in of_data):
            n_max, ratio, profile, fraction, batch = key
            if n_max > pool_n:
                raise ProtocolError(
                    f"{source}: factors.train_per_class: {n_max} images per class, but the "
                    f"{name!r} pool holds {pool_n} for its smallest class (after the "
                    "validation split)"
                )
            counts = training_counts(profile, n_max, pool_counts, ratio, fraction)
            if min(counts) < 1:
                raise ProtocolError(
                    f"{source}: factors.imbalance_ratio: {ratio:g} leaves a class of {name!r} "
                    f"with no training image at train_per_class {n_max} ({profile} profile)"
                )
            if sum(counts) < batch:
                n_max_text = "all" if n_max == ALL_TRAIN else n_max
                raise ProtocolError(
                    f"{source}: factors.batch_size: {batch} exceeds the {sum(counts)} training "
                    f"images of {name!r} at train_per_class {n_max_text}, imbalance_ratio "
                    f"{ratio:g}"
                )
    _check_pretraining(protocol, source, combos)


def _check_pretraining(protocol: Protocol, source: str, combos: list[dict[str, Any]]) -> None:
    """Each stage used can train, and its body fits the network of every trial that loads it.

    A stage's dataset may differ from the fine-tuning data (that is the point), so the body
    is built for both input shapes and their parameter shapes compared.
    """
    from bnstudy.data import DatasetError, check_dataset, input_shape, max_train_per_class
    from bnstudy.data import num_classes as classes_of
    from bnstudy.models import check_architecture_input

    for name in dict.fromkeys(c["pretrain"] for c in combos if c["pretrain_stage"]):
        from bnstudy.training.pretrain import (
            body_mismatch,  # builds networks: torch, only if needed
        )

        stage, where = protocol.pretraining[name], f"{source}: pretraining.{name}"
        options = protocol.stage_options(name)
        try:
            check_dataset(stage.dataset, options)
            stage_shape = input_shape(stage.dataset, options)
            pool_n = max_train_per_class(stage.dataset, options)
            images = stage.train_per_class * classes_of(stage.dataset, options)
        except DatasetError as exc:
            raise ProtocolError(f"{where}: {exc}") from None
        if stage.train_per_class > pool_n:
            raise ProtocolError(
                f"{where}.train_per_class: {stage.train_per_class} images per class, but the "
                f"{stage.dataset!r} pool holds {pool_n} for its smallest class"
            )
        if stage.batch_size > images:
            raise ProtocolError(
                f"{where}.batch_size: {stage.batch_size} exceeds its {images} training images"
            )
        used = [c for c in combos if c["pretrain"] == name]
        bodies = ((c["architecture"], c.get("arch_options", ""), c["dataset"]) for c in used)
        for arch, arch_json, dataset in dict.fromkeys(bodies):
            try:
                check_architecture_input(arch, stage_shape)
            except ValueError as exc:
                raise ProtocolError(f"{where}: {exc} (dataset {stage.dataset!r})") from None
            shape = input_shape(dataset, protocol.dataset_options(dataset))
            arch_options = json.loads(arch_json) if arch_json else None
            why = body_mismatch(arch, shape, stage_shape, arch_options)
            if why:
                raise ProtocolError(
                    f"{where}: architecture {arch!r} pre-trained on {stage.dataset!r} "
                    f"{stage_shape} cannot be fine-tuned on {dataset!r} {shape}: {why}"
                )
