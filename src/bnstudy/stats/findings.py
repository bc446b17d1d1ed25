"""What each step of :func:`bnstudy.stats.analysis.analyze` returns: :class:`Findings` (rows
for the tables, not yet DataFrames) and :class:`Comparison`, who is compared in those rows."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable
from typing import Any

import pandas as pd

from bnstudy.stats.effect_fit import EffectFit
from bnstudy.stats.imputation import ITT
from bnstudy.stats.tuning import FIXED


def label(model: str, population: str, estimand: str = FIXED) -> str:
    """A diagnostic's "model" label; say which population and estimand when not the usual."""
    tags = [population] if population != ITT else []
    tags += [estimand] if estimand != FIXED else []
    return f"{model} [{', '.join(tags)}]" if tags else model


@dataclasses.dataclass(frozen=True)
class Findings:
    """Rows found by one step, per table; steps return them and the orchestrator adds them
    up in call order (:meth:`concat`), so each table keeps the order it always had.

    ``raw`` are estimate rows before the multiplicity adjustment and verdicts
    (:func:`bnstudy.stats.decisions.decide`); ``per_condition`` holds whole DataFrames; the
    others are row dicts of the table of the same name (``summaries``: ``model_summaries``).
    """

    raw: tuple[dict[str, Any], ...] = ()
    effect_sizes: tuple[dict[str, Any], ...] = ()
    heterogeneity: tuple[dict[str, Any], ...] = ()
    per_condition: tuple[pd.DataFrame, ...] = ()
    robustness: tuple[dict[str, Any], ...] = ()
    diagnostics: tuple[dict[str, Any], ...] = ()
    summaries: tuple[dict[str, Any], ...] = ()
    moderator_variance: tuple[dict[str, Any], ...] = ()

    @classmethod
    def concat(cls, parts: Iterable[Findings]) -> Findings:
        """All rows of ``parts``, table by table, in the order given."""
        parts = list(parts)
        return cls(
            **{
                f.name: tuple(itertools.chain.from_iterable(getattr(p, f.name) for p in parts))
                for f in dataclasses.fields(cls)
            }
        )

    @classmethod
    def note(cls, metric: str, variant: str, model: str, level: str, message: str) -> Findings:
        """One diagnostic."""
        row = dict(metric=metric, variant=variant, model=model, level=level, message=message)
        return cls(diagnostics=(row,))


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One metric x variant x population x estimand: the keys of its rows and diagnostics,
    and the settings its estimate rows need."""

    metric: str
    variant: str
    control: str
    population: str
    estimand: str
    confidence: float
    margin: float | None  # the metric's equivalence margin, analysis units

    @property
    def primary(self) -> bool:
        return self.population == ITT

    def keys(self) -> dict[str, str]:
        """The columns that say which comparison an estimate row belongs to."""
        return dict(
            metric=self.metric,
            variant=self.variant,
            control=self.control,
            population=self.population,
            estimand=self.estimand,
        )

    def arms(self) -> dict[str, str]:
        """metric, variant and control: the keys of the primary-only tables' rows."""
        return dict(metric=self.metric, variant=self.variant, control=self.control)

    def note(self, model: str, level: str, message: str) -> Findings:
        """A diagnostic about ``model``, labelled with this population and estimand."""
        where = label(model, self.population, self.estimand)
        return Findings.note(self.metric, self.variant, where, level, message)

    def fitted(self, fit: EffectFit) -> Findings:
        """The summary row of a paired model fit, and its diagnostics."""
        summary = dict(
            fit.summary,
            metric=self.metric,
            variant=self.variant,
            population=self.population,
            estimand=self.estimand,
        )
        model = label(fit.summary["model"], self.population, self.estimand)
        notes = [
            Findings.note(self.metric, self.variant, model, level, message)
            for level, message in fit.diagnostics
        ]
        return Findings.concat([Findings(summaries=(summary,)), *notes])
