"""Progress of a run: a live view the runner keeps, and the two ways the CLI shows it.

:class:`Progress` counts from the trials already done (a resume of 16 trials with 12 done
starts at 12/16, their outcomes included in the tally), and estimates the time left from the
trials' own training times as measured in the workers: worker start-up, dataset preparation
and waiting for a slot do not inflate it, nor (once a worker has run a second task) the
one-time cost of a worker's first task. The estimate is smoothed, so one slow or fast trial
does not make it jump. On a terminal :class:`ProgressBar` draws a bar (tqdm) with
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
    from bnstudy.spec.trial import Trial
    from bnstudy.training.train import TrialResult

#: Outcomes shown as problems, in this order, with their labels.
PROBLEMS = {FAILED: "failed", OOM: "out of memory", TIMEOUT: "timed out"}

#: Weight of a new estimate of the time left against the previous one counted down: low
#: enough that a trial much slower or faster than the others moves it a little, high enough
#: that a lasting change of pace (slower trials later in the protocol) shows within a few.
ETA_WEIGHT = 0.3


@dataclass
class Progress:
    """Where a run stands. The runner updates it; displays only read it."""

    total: int  # trials the protocol declares
    skipped: int  # already done before this run
    workers: int  # tasks that can run at once
    statuses: Counter = field(default_factory=Counter)  # outcomes of this run's trials
    done_before: Counter = field(default_factory=Counter)  # recorded outcomes of the skipped
    notes: list[str] = field(default_factory=list)  # said once, before the first trial
    last: tuple[Trial, TrialResult] | None = None  # the trial just stored
    in_flight: Callable[[], dict[str, int]] | None = None  # trials per device, now
    busy_s: float = 0.0  # training time of the finished tasks, in the workers
    tasks_done: int = 0
    trials_in_done_tasks: int = 0
    warm_busy_s: float = 0.0  # the same, of the tasks that were not their worker's first
    warm_trials: int = 0
    started_at: float = field(default_factory=time.monotonic)
    estimate_s: float | None = None  # time left when last estimated (at ``estimated_at``)
    estimated_at: float = 0.0

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
        """Trials with measured metrics, those done before this run included."""
        every = self.done_before + self.statuses
        return sum(every[s] for s in MEASURED_STATUSES)

    def record_task(
        self, busy_s: float, trials: int, warm: bool = True, now: float | None = None
    ) -> None:
        """A task of ``trials`` trials took ``busy_s`` in its worker; estimate the time left.

        Called as the task's outcome arrives, before its trials are recorded
        (:meth:`record_trial`). ``warm``: not its worker's first task (see
        :attr:`bnstudy.execution.worker.TaskOutcome.warm`).
        """
        now = time.monotonic() if now is None else now
        provisional = not self.warm_trials  # an estimate from first tasks only, if any
        self.busy_s += busy_s
        self.tasks_done += 1
        self.trials_in_done_tasks += trials
        if warm:
            self.warm_busy_s += busy_s
            self.warm_trials += trials
        estimate = self._estimate(self.todo - self.ran - trials)
        if self.estimate_s is not None and not (provisional and warm):
            counted_down = max(0.0, self.estimate_s - (now - self.estimated_at))
            estimate = counted_down + ETA_WEIGHT * (estimate - counted_down)
        # (The first warm task replaces an estimate made from first tasks only: their
        # start-up made it too long, and smoothing would carry that for many trials.)
        self.estimate_s, self.estimated_at = estimate, now

    def record_trial(self, trial: Trial, result: TrialResult) -> None:
        """A trial of the task just recorded is stored."""
        self.statuses[result.status] += 1
        self.last = (trial, result)

    def _estimate(self, left: int) -> float:
        """Trials left x training time per trial / tasks at once (packs: one task, several
        trials). Per trial: the mean over warm tasks, or over all while none is warm."""
        if left <= 0:
            return 0.0
        busy_s, trials = (
            (self.warm_busy_s, self.warm_trials)
            if self.warm_trials
            else (self.busy_s, self.trials_in_done_tasks)
        )
        trials_per_task = self.trials_in_done_tasks / self.tasks_done
        at_once = max(1, min(self.workers, math.ceil(left / trials_per_task)))
        return left * busy_s / trials / at_once

    def eta_s(self, now: float | None = None) -> float | None:
        """Seconds left, counting down between results; None until a task has finished."""
        if self.todo - self.ran <= 0:
            return 0.0
        if self.estimate_s is None:
            return None
        since = (now if now is not None else time.monotonic()) - self.estimated_at
        return max(0.0, self.estimate_s - since)

    def outcomes(self) -> str:
        """``"12 ok, 1 failed"``: measured trials, then each kind of problem, counting the
        trials done before this run (a resume that ends with all 60 ok says 60 ok)."""
        every = self.done_before + self.statuses
        parts = [f"{self.measured} ok"]
        parts += [f"{every[s]} {label}" for s, label in PROBLEMS.items() if every[s]]
        if every["diverged"]:
            parts.append(f"{every['diverged']} diverged")
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
    """One plain line per finished trial (for logs): what varied, outcome, metric, time left.

    ``heading`` (how the run trains) is printed first, once the run has started, which is
    once it holds its results file, and only if it has trials to train.
    """

    def __init__(self, shown: list[str], metric: str, out: TextIO | None = None, heading: str = ""):
        self.shown, self.metric, self.out, self.heading = shown, metric, out, heading
        self.notes_shown: set[str] = set()

    def __call__(self, progress: Progress) -> None:
        out = self.out or sys.stdout
        if progress.last is None and progress.todo and self.heading:  # the start
            print(self.heading, file=out, flush=True)
            self.heading = ""  # once: a run that grows its grid starts again per round
        for note in progress.notes:
            if note not in self.notes_shown:
                print(f"note: {note}", file=out, flush=True)
                self.notes_shown.add(note)
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

    def message(self, line: str) -> None:
        """A line of the run's own (a round of grid growth)."""
        print(line, file=self.out or sys.stdout, flush=True)

    def close(self) -> None:
        pass


class ProgressBar:
    """A tqdm bar: done/total, outcomes, time left, trials in flight per device.

    A thread refreshes it every ``refresh_s`` so the time left counts down and the in-flight
    counts move between results. A trial that fails is printed above the bar as it happens.
    ``heading``: as for :class:`ProgressLines`.
    """

    def __init__(
        self,
        shown: list[str],
        out: TextIO | None = None,
        refresh_s: float = 1.0,
        heading: str = "",
    ):
        self.shown, self.out, self.refresh_s, self.heading = shown, out, refresh_s, heading
        self.bar = None
        self.progress: Progress | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.notes_shown: set[str] = set()

    def __call__(self, progress: Progress) -> None:
        from tqdm.auto import tqdm

        self.progress = progress
        if self.bar is None:
            if progress.todo and self.heading:
                print(self.heading, file=self.out or sys.stdout, flush=True)
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
        elif progress.last is None:  # a later run on the same bar (a round of grid growth)
            self.bar.total = progress.total
            self.bar.n = progress.done
        for note in progress.notes:
            if note not in self.notes_shown:
                self._write(f"note: {note}")
                self.notes_shown.add(note)
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

    def message(self, line: str) -> None:
        """A line of the run's own (a round of grid growth), above the bar once it shows."""
        if self.bar is None:
            print(line, file=self.out or sys.stdout, flush=True)
        else:
            self._write(line)

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
