"""Pair building: the complete pairs of one metric x variant, at fixed settings and, with tuning
factors, at each arm's selected level (:mod:`bnstudy.stats.paired`, :mod:`bnstudy.stats.tuning`),
and diagnostics saying which blocks pairing left out and why."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pandas as pd

from bnstudy.spec.design import Design
from bnstudy.stats.findings import Findings, label
from bnstudy.stats.imputation import ITT, Scored
from bnstudy.stats.paired import Pairs, paired_differences
from bnstudy.stats.tuning import FIXED, TUNED, Selection, base_design, tuned_differences


@dataclasses.dataclass(frozen=True)
class Paired:
    """The pairs of one estimand, the design to analyse them under (the tuned comparison's
    has no tuning factors) and what pairing said about them."""

    estimand: str
    design: Design
    pairs: Pairs | None  # None: the pairs could not be built (``notes`` says why)
    notes: Findings

    @property
    def usable(self) -> bool:
        """Enough complete pairs (2) for an estimate."""
        return self.pairs is not None and self.pairs.n_pairs >= 2


def build_pairs(
    table: pd.DataFrame,
    design: Design,
    metric: str,
    variant: str,
    scored: Scored,
    selection: Selection | None,
) -> Iterator[Paired]:
    """The fixed-setting pairs, then, when the tuned levels were selected, the tuned ones.

    A generator, so the caller analyses the fixed pairs before the tuned ones are built and
    the diagnostics keep that order."""
    pairs = paired_differences(table, design, metric, variant, scored=scored)
    yield Paired(FIXED, design, pairs, pairing_notes(pairs, design, metric, variant, FIXED))
    if selection is None or not selection.ok:
        return
    tuned = base_design(design)
    try:
        pairs = tuned_differences(table, design, metric, variant, scored, selection)
    except ValueError as exc:
        yield Paired(
            TUNED, tuned, None, Findings.note(metric, variant, "tuned", "warning", str(exc))
        )
        return
    yield Paired(TUNED, tuned, pairs, pairing_notes(pairs, tuned, metric, variant, TUNED))


def pairing_notes(
    pairs: Pairs, design: Design, metric: str, variant: str, estimand: str
) -> Findings:
    """What pairing left out: dropped and unmeasured blocks, imputed values, too few pairs."""
    control = design.control
    primary = pairs.population == ITT
    where = label("pairing", pairs.population, estimand)
    notes = []
    if pairs.n_dropped:
        why = (
            "no trial, the metric undefined, no score could be imputed, or no metrics in either arm"
            if primary
            else "not ok, absent, or the metric undefined"
        )
        notes.append(
            f"{pairs.n_dropped} of {pairs.n_blocks} blocks lack a usable {control} or "
            f"{variant} value ({why}) and are not paired"
        )
    if pairs.n_unmeasured:
        notes.append(
            f"{pairs.n_unmeasured} of {pairs.n_blocks} blocks have no metrics in either arm "
            f"(e.g. both diverged): they measured nothing and are left out of the {metric} "
            "comparison; the failure rates count them"
        )
    if primary and (pairs.n_imputed_control or pairs.n_imputed_variant):
        notes.append(
            f"intention to treat: of {pairs.n_pairs} pairs, {pairs.n_imputed_variant} {variant} "
            f"and {pairs.n_imputed_control} {control} values are the declared score of a "
            f"trial without metrics (failed_score {design.failed_score!r})"
        )
    found = [Findings.note(metric, variant, where, "info", message) for message in notes]
    if pairs.n_pairs < 2:
        found.append(
            Findings.note(
                metric,
                variant,
                where,
                "warning",
                f"{pairs.n_pairs} complete pair(s): no estimate for {variant} vs {control}",
            )
        )
    return Findings.concat(found)
