"""Progress of a run: a live view the runner keeps, and the two ways the CLI shows it.

:class:`Progress` counts from the trials already done (a resume of 16 trials with 12 done
starts at 12/16), tallies outcomes, and estimates the time left from the trials' own
training times as measured in the workers: worker start-up, dataset preparation and waiting
for a slot do not inflate it. On a terminal :class:`ProgressBar` draws a bar (tqdm) with
done/total, the outcomes, the time left and the trials in flight on each device; elsewhere
(a log file, a pipe) :class:`ProgressLines` prints one plain line per finished trial.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from bnstudy.catalogue import FAILED, MEASURED_STATUSES, OOM, TIMEOUT

if TYPE_CHECKING:  # keep torch out of this module's imports
    from bnstudy.protocol import Trial
    from bnstudy.train import TrialResult

#: Outcomes shown as problems, in this order, with their labels.
PROBLEMS = {FAILED: "failed", OOM: "out of memory", TIMEOUT: "timed out"}


@dataclass
class Progress:
    """Where a run stands. The runner updates it; displays only read it."""

    total: int  # trials the protocol declares
    skipped: int  # already done before this run
    workers: int  # tasks that can run at once
    statuses: Counter = field(default_factory=Counter)  # outcomes of this run's trials
    notes: list[str] = field(default_factory=list)  # said once, before the first trial
    last: tuple[Trial, TrialResult] | None = None  # the trial just stored
    in_flight: Callable[[], dict[str, int]] | None = None  # trials per device, now
    busy_s: float = 0.0  # training time of the finished tasks, in the workers
    tasks_done: int = 0
    trials_in_done_tasks: int = 0
    started_at: float = field(default_factory=time.monotonic)
    updated_at: float = field(default_factory=time.monotonic)

    @property
    def ran(self) -> int:
        return sum(self.statuses.values())

    @property
    def done(self) -> int:
        return self.skipped + self.ran

    @property
    def todo(self) -> int:
        """Trials this run set out to train."""
        return self.total - self.skipped

    @property
    def measured(self) -> int:
        return sum(self.statuses[s] for s in MEASURED_STATUSES)

    def record_task(self, busy_s: float, trials: int) -> None:
        self.busy_s += busy_s
        self.tasks_done += 1
        self.trials_in_done_tasks += trials

    def eta_s(self, now: float | None = None) -> float | None:
        """Seconds left: trials left x training time per trial / tasks at once.

        None until a task has finished. Packs count as one task of several trials.
        """
        left = self.todo - self.ran
        if left <= 0:
            return 0.0
        if not self.tasks_done:
            return None
        per_trial_s = self.busy_s / self.trials_in_done_tasks
        trials_per_task = self.trials_in_done_tasks / self.tasks_done
        at_once = max(1, min(self.workers, math.ceil(left / trials_per_task)))
        since = (now if now is not None else time.monotonic()) - self.updated_at
        return max(0.0, left * per_trial_s / at_once - since)

    def outcomes(self) -> str:
        """``"12 ok, 1 failed"``: measured trials, then each kind of problem."""
        parts = [f"{self.measured} ok"]
        parts += [
            f"{self.statuses[s]} {label}" for s, label in PROBLEMS.items() if self.statuses[s]
        ]
        if self.statuses["diverged"]:
            parts.append(f"{self.statuses['diverged']} diverged")
        return ", ".join(parts)

    def devices(self) -> str:
        """``"cuda:0 4, cuda:1 3"``: trials in flight per device ("" when unknown)."""
        if self.in_flight is None:
            return ""
        return ", ".join(f"{d} {n}" for d, n in self.in_flight().items())


def format_s(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def describe_trial(trial: Trial, shown: list[str]) -> str:
    settings = " ".join(f"{f}={getattr(trial, f)}" for f in shown)
    return f"{settings} seed={trial.seed}".strip()


class ProgressLines:
    """One plain line per finished trial (for logs): what varied, outcome, metric, time left."""

    def __init__(self, shown: list[str], metric: str, out: TextIO | None = None):
        self.shown, self.metric, self.out = shown, metric, out
        self.notes_shown = 0

    def __call__(self, progress: Progress) -> None:
        out = self.out or sys.stdout
        for note in progress.notes[self.notes_shown :]:
            print(f"note: {note}", file=out, flush=True)
        self.notes_shown = len(progress.notes)
        if progress.last is None:  # the start
            if progress.skipped:
                print(
                    f"resuming: {progress.skipped} of {progress.total} trials already done",
                    file=out,
                    flush=True,
                )
            return
        trial, result = progress.last
        value = result.metrics.get(self.metric, math.nan)
        wall_s = result.metrics.get("wall_s", math.nan)
        detail = f"{self.metric}={value:.4g} ({wall_s:.1f} s"
        if result.status in PROBLEMS:
            detail = f"{_first_line(result.error)} ({result.device}"
        print(
            f"[{progress.done}/{progress.total}] {describe_trial(trial, self.shown)}: "
            f"{result.status} {detail}; ~{format_s(progress.eta_s())} left)",
            file=out,
            flush=True,
        )

    def close(self) -> None:
        pass


class ProgressBar:
    """A tqdm bar: done/total, outcomes, time left, trials in flight per device.

    A thread refreshes it every ``refresh_s`` so the time left counts down and the in-flight
    counts move between results. A trial that fails is printed above the bar as it happens.
    """

    def __init__(self, shown: list[str], out: TextIO | None = None, refresh_s: float = 1.0):
        self.shown, self.out, self.refresh_s = shown, out, refresh_s
        self.bar = None
        self.progress: Progress | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.notes_shown = 0

    def __call__(self, progress: Progress) -> None:
        from tqdm.auto import tqdm

        self.progress = progress
        if self.bar is None:
            self.bar = tqdm(
                total=progress.total,
                initial=progress.done,
                unit="trial",
                file=self.out or sys.stdout,
                dynamic_ncols=True,
                bar_format="{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {desc}",
            )
            if progress.skipped:
                self._write(f"resuming: {progress.skipped} of {progress.total} already done")
            self._thread = threading.Thread(target=self._tick, daemon=True, name="bnstudy-bar")
            self._thread.start()
        for note in progress.notes[self.notes_shown :]:
            self._write(f"note: {note}")
        self.notes_shown = len(progress.notes)
        if progress.last is not None:
            trial, result = progress.last
            if result.status in PROBLEMS:
                self._write(
                    f"{result.status}: {describe_trial(trial, self.shown)} on {result.device}: "
                    f"{_first_line(result.error)}"
                )
            self._show(refresh=False)
            self.bar.update(progress.done - self.bar.n)
        else:
            self._show()

    def _write(self, line: str) -> None:
        """A line above the bar (the bar is redrawn under it)."""
        from tqdm.auto import tqdm

        tqdm.write(line, file=self.out or sys.stdout)

    def _show(self, refresh: bool = True) -> None:
        progress, bar = self.progress, self.bar
        if progress is None or bar is None:
            return
        parts = [progress.outcomes(), f"ETA {format_s(progress.eta_s())}"]
        if devices := progress.devices():
            parts.append(f"in flight: {devices}")
        bar.set_description_str(" | ".join(parts), refresh=refresh)

    def _tick(self) -> None:
        while not self._stop.wait(self.refresh_s):
            self._show()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.bar is not None:
            self._show()
            self.bar.close()


def _first_line(text: str | None) -> str:
    return (text or "").splitlines()[0] if text else ""
