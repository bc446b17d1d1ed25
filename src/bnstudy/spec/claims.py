"""Pre-registered hypotheses: the protocol's ``hypotheses:`` section, its hash and registration.

A hypothesis states, before any result exists, which comparison (variant vs control on one
metric, in a subset of the conditions) is expected to come out which way: ``higher`` or
``lower`` (the sign of variant - control on the metric's own scale, not "better") or
``equivalent`` within ``margin``. Optionally the claim is about an ``interaction``: the effect
at one level of a factor minus the effect at another.

``in`` says how many of the conditions the claim is about: ``average`` (the default: the mean
effect over them), ``any`` (at least one condition, e.g. "BN can cost more than the margin
somewhere") or ``all`` (every condition). For ``any`` and ``all`` a ``higher``/``lower`` claim
is about the effect lying beyond the margin (beyond 0 for a metric without one), and
``equivalent`` about each condition's TOST; the conditions are one Holm family (see
``bnstudy.stats.regimes``).

Each hypothesis has a canonical hash (sha256 of its JSON with every default resolved), so a
reworded claim or a moved margin is a different hypothesis. ``in: average`` is the one default
left out of it: hypotheses registered before ``in`` existed keep their hashes. The first run
that writes results records the hashes in the results file's metadata
(:data:`REGISTRATION_KEY`); later runs keep that record as it is. At analysis time a
hypothesis whose hash the record lacks was added or changed after results existed: it is
exploratory, reported unadjusted and never part of the confirmatory (Holm) family. A file
without a record (written before registration existed) makes every hypothesis exploratory:
nothing proves they came first.

``variant`` and ``control`` name arms: heads under the default treatment; under another
(``treatment: {factor: dropout, control: 0}``) levels of its factor, compared as its type
(``variant: 0.3``), or arms' labels (``"dropout 0.3"``). :func:`designs` hands ``stats`` the
arms' labels, as the analysed table's treatment column holds them.

The cross-checks against the protocol (arms, factors, levels) live in ``bnstudy.spec.checks``;
this module knows only the catalogue and the field types, so it loads without torch.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from bnstudy.catalogue import METRICS
from bnstudy.spec.design import HypothesisDesign, Quantifier
from bnstudy.spec.fields import STRICT
from bnstudy.spec.treatment import Level
from bnstudy.spec.trial import TREATMENT

#: The results-file metadata key (``bnstudy.`` prefix added by the store) of the registration.
REGISTRATION_KEY = "hypotheses_registration"
#: An id appears in HTML anchors and file-like contexts, so keep it a safe name.
HYPOTHESIS_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class Interaction(BaseModel):
    """The claim is about (effect at ``factor = high``) - (effect at ``factor = low``)."""

    model_config = STRICT

    factor: Annotated[str, Field(min_length=1)]
    low: Any
    high: Any

    @model_validator(mode="after")
    def _two_levels(self) -> Interaction:
        if self.low == self.high:
            raise ValueError(f"low and high must differ; both are {self.low!r}")
        return self


class Hypothesis(BaseModel):
    """One pre-registered claim (see the module docstring)."""

    model_config = STRICT

    id: Annotated[str, Field(pattern=HYPOTHESIS_ID, max_length=100)]
    claim: Annotated[str, Field(min_length=1)]
    metric: str
    #: Arms: a head, an arm's label or a level of the treatment factor (see the module).
    variant: Level
    control: Level
    #: factor -> level or list of levels; the claim is about these conditions only.
    where: dict[str, list[Any]] = Field(default={})
    expect: Literal["higher", "lower", "equivalent"]
    #: In analysis units (pp for accuracies); default: the metric's customary margin.
    margin: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    interaction: Interaction | None = None
    #: ``tuned`` (each arm at its own best level of ``analysis.tune``) or ``fixed``;
    #: default: tuned when the protocol tunes, else fixed (resolved by :func:`resolved`).
    estimand: Literal["tuned", "fixed"] | None = None
    #: ``in:`` in the YAML: ``average`` (the mean effect over the conditions), ``any`` or
    #: ``all`` of the conditions (see the module docstring).
    quantifier: Quantifier = Field(default="average", alias="in")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, name: str) -> str:
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; allowed: {', '.join(METRICS)}")
        return name

    @field_validator("where", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v if isinstance(v, list) else [v] for k, v in value.items()}
        return value

    @model_validator(mode="before")
    @classmethod
    def _default_margin(cls, data: Any) -> Any:
        # Resolved here, not at analysis time, so the registered hash covers the margin used.
        if isinstance(data, dict) and data.get("margin") is None and data.get("metric") in METRICS:
            return {**data, "margin": METRICS[data["metric"]].default_margin}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Hypothesis:
        if self.variant == self.control:
            raise ValueError(f"variant and control are both {self.variant!r}")
        if self.expect == "equivalent" and self.interaction is not None:
            # The moderator contrast carries no equivalence test (see stats.hypotheses).
            raise ValueError("an interaction is expected higher or lower, not equivalent")
        if self.quantifier != "average" and self.interaction is not None:
            raise ValueError(
                f"in: {self.quantifier} is about the conditions' own effects; an interaction "
                "is one contrast (use in: average, the default)"
            )
        if self.expect == "equivalent" and self.margin is None:
            raise ValueError(
                f"expect: equivalent needs a margin; {self.metric} has no customary one"
            )
        return self


def resolved(h: Hypothesis, tunes: bool) -> dict[str, Any]:
    """Every field with its default resolved, in canonical form (what the hash covers).

    Numbers are written as floats (``1`` and ``1.0`` are the same level; so are a numeric
    treatment's ``variant`` and ``control``) and the levels of ``where`` sorted, so only a
    change of meaning changes the hash. The quantifier is written as ``in`` only when it is
    not ``average``: a hypothesis from before quantifiers existed hashes as it did.
    """
    data = h.model_dump()
    del data["quantifier"]
    if h.quantifier != "average":
        data["in"] = h.quantifier
    data["estimand"] = h.estimand or ("tuned" if tunes else "fixed")
    # A numeric treatment's levels (``variant: 2048`` or ``2048.0``) name one arm: one hash.
    data["variant"], data["control"] = _canonical(h.variant), _canonical(h.control)
    data["where"] = {k: sorted(map(_canonical, v), key=json.dumps) for k, v in h.where.items()}
    if h.interaction is not None:
        i = h.interaction
        data["interaction"] = {
            "factor": i.factor,
            "low": _canonical(i.low),
            "high": _canonical(i.high),
        }
    return data


def _canonical(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def hypothesis_sha256(h: Hypothesis, tunes: bool) -> str:
    """sha256 of the canonical JSON of :func:`resolved` (stable under key order)."""
    text = json.dumps(resolved(h, tunes), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def designs(protocol: Any) -> list[HypothesisDesign]:
    """The protocol's hypotheses as plain data for ``stats`` (no pydantic there)."""
    tunes = bool(protocol.analysis.tune)
    by_level = protocol.treatment_factor != TREATMENT  # else the names are the heads'
    out = []
    for h in protocol.hypotheses:
        r = resolved(h, tunes)
        i = h.interaction
        out.append(
            HypothesisDesign(
                id=h.id,
                claim=h.claim,
                metric=h.metric,
                variant=protocol.arm_named(h.variant) if by_level else h.variant,
                control=protocol.arm_named(h.control) if by_level else h.control,
                where={k: tuple(v) for k, v in h.where.items()},
                expect=h.expect,
                margin=h.margin,
                estimand=r["estimand"],
                sha256=hypothesis_sha256(h, tunes),
                interaction=None if i is None else (i.factor, i.low, i.high),
                quantifier=h.quantifier,
            )
        )
    return out


def registration(protocol: Any, now: dt.datetime | None = None) -> str:
    """The registration record (JSON): when, and each hypothesis' id and hash."""
    when = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    record = {
        "registered_at": when,
        "protocol_sha256": protocol.sha256,
        "hypotheses": {d.id: d.sha256 for d in designs(protocol)},
    }
    return json.dumps(record, sort_keys=True)


def registration_to_record(
    metadata: Mapping[str, str], results_exist: bool, protocol: Any
) -> dict[str, str]:
    """The registration metadata a run writes: the file's own record if it has one (never
    replaced), a new record when no result exists yet, else none (results came first)."""
    if REGISTRATION_KEY in metadata:
        return {REGISTRATION_KEY: metadata[REGISTRATION_KEY]}
    if results_exist:
        return {}
    return {REGISTRATION_KEY: registration(protocol)}


def registered_hashes(metadata: Mapping[str, str]) -> set[str] | None:
    """The hashes a results file registered; None when it has no (readable) record."""
    text = metadata.get(REGISTRATION_KEY)
    if text is None:
        return None
    try:
        return set(json.loads(text)["hypotheses"].values())
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def registered_at(metadata: Mapping[str, str]) -> str | None:
    """When the record was made (ISO 8601, UTC), if the file has one."""
    try:
        return json.loads(metadata[REGISTRATION_KEY])["registered_at"]
    except (KeyError, ValueError, TypeError):
        return None
