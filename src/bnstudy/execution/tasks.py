"""What a run trains: the trials still to run, and the tasks they are grouped into.

A resumed run skips trials the results already hold with a final outcome (:func:`to_run`).
The others become tasks (:func:`make_tasks`): one trial each, or, with packing, up to
``pack`` trials that differ only in their seed, trained as one packed model in one slot.
:func:`choose_packing` decides whether this run packs at all, and says why not when it
cannot (no ``bnstudy.training.packing``, pre-trained bodies, head dropout, an optimiser a
plugin registered, architectures packing does not support).
"""

from __future__ import annotations

import importlib
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

from bnstudy.catalogue import FINAL_STATUSES, TIMEOUT
from bnstudy.execution.plan import Execution
from bnstudy.execution.worker import PackFn, TrialFn, run_trial
from bnstudy.spec.trial import Trial
from bnstudy.store import ResultStore
from bnstudy.training.optimizers import BUILTIN as BUILTIN_OPTIMIZERS  # torch-free


def to_run(
    store: ResultStore, trials: list[Trial], timeout_s: float | None
) -> tuple[list[Trial], Counter]:
    """The trials without a final outcome in ``store``, in protocol order, and the recorded
    outcomes of the others (``{"ok": 40, "timeout": 2}``).

    A ``timeout`` row is final for its time limit: it is run again only when this run
    allows more time than the limit it was recorded under (or no limit).
    """
    if not store.exists():
        return list(trials), Counter()
    table = store.read().table
    final = table["status"].isin(FINAL_STATUSES)
    timed_out = table["status"] == TIMEOUT
    if timed_out.any():
        recorded = table.get("timeout_s")
        if timeout_s is None or recorded is None:
            final &= ~timed_out
        else:
            final &= ~(timed_out & (recorded.isna() | (recorded < timeout_s)))
    outcome = dict(zip(table.loc[final, "trial_id"], table.loc[final, "status"], strict=True))
    todo = [t for t in trials if t.trial_id not in outcome]
    return todo, Counter(outcome[t.trial_id] for t in trials if t.trial_id in outcome)


def make_tasks(
    trials: list[Trial], pack: int, packable: Callable[[Trial], bool] | None = None
) -> list[tuple[Trial, ...]]:
    """Group ``trials`` into tasks: packs of up to ``pack`` trials that differ only in seed.

    Trials ``packable`` refuses, and all trials when ``pack`` is 1, are tasks of one. Packs
    keep the protocol order of their first trial.
    """
    if pack <= 1:
        return [(t,) for t in trials]
    groups: dict[Any, list[Trial]] = {}
    for trial in trials:
        if packable is not None and not packable(trial):
            groups[("alone", trial.trial_id)] = [trial]
            continue
        key = tuple(sorted((k, v) for k, v in trial.settings().items() if k != "seed"))
        groups.setdefault(key, []).append(trial)
    return [
        tuple(group[i : i + pack]) for group in groups.values() for i in range(0, len(group), pack)
    ]


def choose_packing(
    execution: Execution,
    trial_fn: TrialFn,
    pack_fn: PackFn | None,
    todo: list[Trial],
    notes: list[str],
) -> tuple[PackFn | None, Callable[[Trial], bool] | None]:
    """The pack function and its ``packable`` test, or (None, None) to run unpacked."""
    if execution.pack <= 1 or not todo:
        return None, None
    if pack_fn is not None:
        return pack_fn, None
    # A substitute trial function has no packed counterpart. bnstudy.training.train.run_trial passed
    # itself counts as the default; a caller holding it has imported bnstudy.training.train already.
    train = sys.modules.get("bnstudy.training.train")
    if trial_fn not in (run_trial, getattr(train, "run_trial", None)):
        return None, None
    try:  # (import_module: an installation without it, or a test that hides it)
        packing = importlib.import_module("bnstudy.training.packing")
    except ImportError:
        notes.append(
            "seed packing is not available in this installation (no bnstudy.training.packing): "
            "every trial trains on its own"
        )
        return None, None
    unpacked: dict[str, list[Trial]] = {}
    for trial in todo:
        if (reason := _why_unpacked(trial, packing.packable)) is not None:
            unpacked.setdefault(reason, []).append(trial)
    if pretrained := unpacked.get("pretrained"):
        notes.append(
            f"packing does not support pre-trained bodies: those {_trials(pretrained)} train "
            "one at a time"
        )
    if dropped := unpacked.get("dropout"):
        notes.append(
            f"packing does not support head dropout: those {_trials(dropped)} train one at a time"
        )
    if own := unpacked.get("optimizer"):
        names = ", ".join(sorted({t.optimizer for t in own}))
        notes.append(
            f"packing runs bnstudy's own optimisers only: those {_trials(own)} with {names} "
            "train one at a time"
        )
    if refused := unpacked.get("layers"):
        heads: dict[str, set[str]] = {}
        for trial in refused:
            heads.setdefault(trial.architecture, set()).add(trial.head)
        what = "; ".join(
            f"{arch} (head{'s' if len(h) > 1 else ''} {', '.join(sorted(h))})"
            for arch, h in sorted(heads.items())
        )
        notes.append(
            f"packing does not support {what}: "
            f"{'its' if len(refused) == 1 else 'those'} {_trials(refused)} train one at a time"
        )
    return packing.run_pack, packing.packable


def _why_unpacked(trial: Trial, packable: Callable[[Trial], bool]) -> str | None:
    """Why ``trial`` trains alone under packing (the first reason that applies), or None."""
    if trial.pretrain_stage:
        return "pretrained"
    if trial.dropout > 0:
        return "dropout"
    if trial.optimizer not in BUILTIN_OPTIMIZERS:
        return "optimizer"
    if not packable(trial):
        return "layers"
    return None


def _trials(trials: list[Trial]) -> str:
    """``1 trial`` or ``N trials``."""
    return f"{len(trials)} trial{'s' if len(trials) > 1 else ''}"
