"""Pre-training stages: a body trained on another task first, cached once, shared by a block.

A trial with ``pretrain`` other than ``none`` starts its body from the weights a stage of the
protocol's ``pretraining:`` section produced (see :class:`bnstudy.spec.stages.PretrainStage`),
then fine-tunes body and head exactly as any trial; its head is initialised as without
pre-training. Every arm of a pairing block loads the *same* checkpoint: the body is a
function of (architecture, stage settings, seed) only, never of the head, so the comparison
stays paired.

**The cache.** :func:`ensure_checkpoints` runs in the parent before any trial: each body
the pending trials need is trained once, on the CPU (no CUDA context in the parent; the
slots stay the workers'), and written atomically to
``<dataset cache dir>/pretrained/<key>.pt`` with its metadata (format, torch version, stage
settings, final training loss). A checkpoint torch cannot read (a truncated file) is rebuilt
once. Workers load it with ``torch.load(weights_only=True)``: a checkpoint can hold tensors,
numbers and strings, never code. A resume finds the files and trains nothing, so its trials
start from exactly the bodies the first run's did.

**Random streams.** The stage trains as the trial :func:`stage_trial` describes (the
fine-tuning trial's seed and architecture, the stage's dataset and settings, a ``plain``
head), so its subset, data order and initial weights come from that trial's own streams.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bnstudy.atomic import write_atomically
from bnstudy.data import DatasetError, build_dataset, cache_dir, prepare_dataset
from bnstudy.models import build_model
from bnstudy.spec.errors import ProtocolError
from bnstudy.spec.trial import Trial
from bnstudy.training import loop
from bnstudy.training.losses import Criterion

if TYPE_CHECKING:  # a type only: workers load this module and never pydantic
    from bnstudy.spec.protocol import Protocol

#: Bump when the checkpoint's content changes: old files are then simply not found.
CHECKPOINT_FORMAT = 1
#: The head a stage trains with: it adds nothing between the features and the FC, so the
#: body it leaves favours none of the heads compared afterwards.
STAGE_HEAD = "plain"
#: Steps over which the stage's final training loss (recorded in each row) is averaged.
LOSS_WINDOW = 100


class CheckpointError(ValueError):
    """A pre-trained body that cannot be used; the message is one line naming the file."""


def stage_trial(trial: Trial) -> Trial:
    """The trial that trains ``trial``'s pre-trained body (balanced data, cosine schedule)."""
    stage = json.loads(trial.pretrain_stage)
    return Trial(
        seed=trial.seed,
        architecture=trial.architecture,
        head=STAGE_HEAD,
        dataset=stage["dataset"],
        imbalance_ratio=1.0,
        train_per_class=stage["train_per_class"],
        epochs=0,
        steps=stage["steps"],
        batch_size=stage["batch_size"],
        lr=stage["lr"],
        optimizer=stage["optimizer"],
        weight_decay=stage["weight_decay"],
        data_options=stage["data_options"],
        arch_options=trial.arch_options,
    )


def checkpoint_key(trial: Trial) -> str:
    """Names ``trial``'s body: the same for every head, condition and stage name."""
    key = {
        "format": CHECKPOINT_FORMAT,
        "architecture": trial.architecture,
        "architecture_options": trial.arch_options,
        "seed": trial.seed,
        "stage": trial.pretrain_stage,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def checkpoint_path(trial: Trial) -> Path:
    return cache_dir() / "pretrained" / f"{checkpoint_key(trial)}.pt"


def train_body(trial: Trial, options: dict[str, Any] | None = None) -> tuple[dict, float]:
    """Train ``trial``'s stage on the CPU; its body's state_dict and final training loss.

    The stage trains as a trial (:func:`stage_trial`) with the loop every trial uses, plus a
    check at every step (on the CPU a host read costs nothing) and the window of its last
    :data:`LOSS_WINDOW` losses. Raises ProtocolError when the stage's loss is not finite (its
    settings are at fault).
    """
    stage = stage_trial(trial)
    data = build_dataset(stage, options)
    model = build_model(
        stage.architecture,
        STAGE_HEAD,
        data.input_shape,
        data.num_classes,
        init_seed=lambda name: stage.stream_seed("init/" + name),
        architecture_options=stage.architecture_options,
    )
    n, batch = len(data.y_train), stage.batch_size
    if n // batch == 0:
        raise ProtocolError(
            f"pretraining.{trial.pretrain}: batch_size {batch} exceeds its {n} training images"
        )
    window: deque[torch.Tensor] = deque(maxlen=LOSS_WINDOW)

    def check(step: int, loss: torch.Tensor) -> None:
        window.append(loss.detach())
        if not math.isfinite(loss.item()):
            raise ProtocolError(
                f"pretraining.{trial.pretrain}: diverged (non-finite loss at step {step + 1}) "
                f"for architecture {trial.architecture!r}, seed {trial.seed}; lower its lr"
            )

    hooks = loop.Hooks(
        # Pre-training is plain cross-entropy: a stage has no loss factor.
        loop.mean_loss(model, data.x_train, data.y_train, Criterion(stage.label_smoothing)),
        clip=loop.clip_grad_norm(stage.grad_clip),
        step=check,
    )
    setup = loop.optimisation(stage, model, n)
    loop.train_copies(model, setup, [loop.sampler(stage, data.y_train)], batch, hooks)
    train_loss = float(torch.stack(list(window)).mean())
    return {k: v.detach().clone() for k, v in model.body.state_dict().items()}, train_loss


def save_checkpoint(path: Path, trial: Trial, body: dict, train_loss: float) -> None:
    """Write the body atomically (temp file + rename): a killed run leaves no partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {
        "format": CHECKPOINT_FORMAT,
        "torch_version": str(torch.__version__),  # a str subclass weights_only refuses
        "architecture": trial.architecture,
        "seed": trial.seed,
        "stage": trial.pretrain_stage,
        "train_loss": train_loss,
        "body": body,
    }
    write_atomically(path, lambda file: torch.save(content, file))


def load_checkpoint(path: Path, device: str = "cpu") -> dict[str, Any]:
    """A checkpoint's content; CheckpointError when it is missing, unreadable or not ours."""
    try:
        content = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(
            f"{path}: pre-trained body not found (bnstudy run trains it before the trials)"
        ) from None
    except pickle.UnpicklingError:  # what weights_only=True raises for anything but data
        raise CheckpointError(
            f"{path}: holds objects other than tensors, numbers and strings (refused: "
            "checkpoints are loaded with weights_only=True)"
        ) from None
    except Exception as exc:  # truncated or corrupt: torch's messages vary by version
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable pre-trained body ({why[:200]})") from None
    if not isinstance(content, dict) or content.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a pre-trained body of format {CHECKPOINT_FORMAT}")
    return content


def load_body(model: torch.nn.Module, trial: Trial, device: str = "cpu") -> float:
    """Load ``trial``'s pre-trained body into ``model.body`` (strictly); the stage's loss."""
    content = load_checkpoint(checkpoint_path(trial), device)
    model.body.load_state_dict(content["body"], strict=True)
    return float(content["train_loss"])


def ensure_checkpoints(
    protocol: Protocol, trials: Iterable[Trial], say: Callable[[str], None] | None = None
) -> int:
    """Train and cache every body ``trials`` need that is not cached yet; how many were trained.

    Runs in the parent before the trials. A cached file that cannot be read is rebuilt.
    ``say(line)`` hears a line per body before and after it trains (each can take minutes,
    and no trial reports progress until they are done).
    """
    needed: dict[Path, Trial] = {}
    for trial in trials:
        if trial.pretrain_stage:
            needed.setdefault(checkpoint_path(trial), trial)
    missing = [(path, trial) for path, trial in needed.items() if not _readable(path)]
    for count, (path, trial) in enumerate(missing, 1):
        options = protocol.stage_options(trial.pretrain)
        try:
            prepare_dataset(stage_trial(trial).dataset, options)
        except DatasetError as exc:
            raise ProtocolError(f"pretraining.{trial.pretrain}: {exc}") from None
        what = (
            f"pre-training body {count}/{len(missing)}: {trial.architecture} on stage "
            f"{trial.pretrain!r} ({stage_trial(trial).dataset}), seed {trial.seed}"
        )
        if say is not None:
            say(f"{what} ...")
        start = time.perf_counter()
        body, train_loss = train_body(trial, options)
        save_checkpoint(path, trial, body, train_loss)
        try:  # what the workers will do; a second failure is no longer a stale file
            load_checkpoint(path)
        except CheckpointError as exc:
            raise ProtocolError(f"pretraining.{trial.pretrain}: {exc}") from None
        if say is not None:
            say(f"{what}: done in {time.perf_counter() - start:.1f} s")
    return len(missing)


def _readable(path: Path) -> bool:
    """Whether a cached body can be used as it is; an unreadable file is removed (rebuilt)."""
    if not path.exists():
        return False
    try:
        load_checkpoint(path)
        return True
    except CheckpointError:
        path.unlink(missing_ok=True)
        return False


def body_mismatch(
    architecture: str,
    shape: tuple[int, ...],
    stage_shape: tuple[int, ...],
    architecture_options: dict[str, Any] | None = None,
) -> str:
    """Why a body built for ``stage_shape`` cannot be loaded into one for ``shape`` ("" if it can).

    Builds both bodies (cheap: small networks, no training) and compares their state_dicts.
    """

    def shapes(input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        model = build_model(
            architecture,
            STAGE_HEAD,
            input_shape,
            2,
            init_seed=lambda name: 0,
            architecture_options=architecture_options,
        )
        return {k: tuple(v.shape) for k, v in model.body.state_dict().items()}

    ours, theirs = shapes(shape), shapes(stage_shape)
    if ours.keys() != theirs.keys():
        differ = sorted(ours.keys() ^ theirs.keys())[0]
        return f"parameter {differ!r} is in only one of them"
    for name, size in ours.items():
        if theirs[name] != size:
            return f"parameter {name!r} is {list(theirs[name])} vs {list(size)}"
    return ""
