"""A run that grows the tuning grid: train, look at the selected levels, add the levels beyond
open edges, train those, and again (see :mod:`bnstudy.spec.grow` for what grows and how).

Which factors grow: those the protocol declares ``analysis.tune: {F: {extend: true, factor:
K}}``; ``extend_grid=True`` (``bnstudy run --extend-grid``) grows every tuning factor with
positive numeric levels (by its ``factor``, else ``spec.grow.DEFAULT_FACTOR``), and
``extend_grid=False`` (``--no-extend-grid``) none. A round starts only when the previous run
finished (not interrupted, not aborted); rounds are numbered over the whole study (those the
results record count), and none starts past ``max_rounds``.

The selection is the analysis' (``bnstudy.stats.tuning``), which this package may not import:
the caller hands in ``find_edges(results_path)``, the selections at an edge of the grid in
the results so far (``bnstudy.study`` reads them on the intention-to-treat population, the
primary analysis').
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bnstudy.execution import runner
from bnstudy.execution.runner import RunSummary, with_recorded_growth
from bnstudy.spec import grow
from bnstudy.spec.protocol import Protocol
from bnstudy.store import ResultStore

#: The selections at an edge of the tuning grid in a results file (``bnstudy.study``).
FindEdges = Callable[[Path], Sequence[grow.Edge]]


def run_growing(
    protocol: Protocol,
    results_path: str | Path,
    find_edges: FindEdges,
    *,
    extend_grid: bool | None = None,
    max_rounds: int = grow.MAX_ROUNDS,
    on_round: Callable[[str], None] | None = None,
    **options: Any,
) -> RunSummary:
    """Run ``protocol`` (:func:`~bnstudy.execution.runner.run_protocol`, with
    ``options``), then grow its tuning grid round by round until no choice is at an open
    edge, a bound stops it, or ``max_rounds`` rounds are grown; one summary for all the
    runs. ``on_round(line)`` hears one line per
    round (``grid round 1: lr 0.0333 (2 conditions): 16 new trials``), and one when rounds
    run out with an edge still open."""
    results_path = Path(results_path)
    # looked up when called: a substitute runner.run_protocol (a test's) is the one used
    summary = runner.run_protocol(protocol, results_path, **options)
    growth = grow.growth_settings(
        protocol.design().tune_settings,
        {f: getattr(protocol.factors, f) for f in protocol.analysis.tune},
        extend_grid,
    )
    say = on_round or (lambda line: None)
    while growth and not (summary.interrupted or summary.aborted):
        grown = with_recorded_growth(protocol, ResultStore(results_path).metadata()).grown
        round_ = grow.last_round(grown) + 1
        new = grow.plan_round(find_edges(results_path), growth, grown, round_)
        if not new:
            break
        if round_ > max_rounds:
            conditions = len({g.where for g in new})
            say(
                f"grid: no round past {max_rounds}: {_factors(new)} still chosen at an open "
                f"edge in {conditions} condition{'' if conditions == 1 else 's'}"
            )
            break
        before = len(protocol.with_grown(grown).expand())
        protocol = protocol.with_grown((*grown, *new))
        added = len(protocol.expand()) - before
        if not added:  # levels whose trials the protocol excludes: nothing left to grow
            break
        say(f"grid round {round_}: {_levels(new)}: {added} new trials")
        summary.absorb(runner.run_protocol(protocol, results_path, **options))
    return summary


def _levels(new: Sequence[grow.GrownLevel]) -> str:
    """``lr 0.0333 (2 conditions), lr 0.9 (1 condition)``."""
    counts = Counter((g.factor, g.level) for g in new)
    return ", ".join(
        f"{factor} {grow.show_level(level)} ({n} condition{'' if n == 1 else 's'})"
        for (factor, level), n in counts.items()
    )


def _factors(new: Sequence[grow.GrownLevel]) -> str:
    return ", ".join(dict.fromkeys(g.factor for g in new))
