"""Growing a tuning grid past its edges: the levels a run adds, and how they are recorded.

With ``analysis.tune: {lr: {extend: true, factor: 3, bounds: [1e-4, 1.0]}}`` a run that has
trained the protocol's trials looks at the level each arm is tuned to (per base condition and
fold of seeds, as the analysis selects it) and, where a choice is the lowest or the highest
level tried without being the declared bound on that side (an *open edge*), adds the next
level beyond it: the edge divided or multiplied by ``factor``, rounded to
:data:`SIGNIFICANT_DIGITS` significant digits (so ids are reproducible), clipped at the bound.
The new level is added in that base condition only, for every arm and every seed (pairing
holds), and the run trains those trials and looks again, until no open edge is left, a
bound is reached, or :data:`MAX_ROUNDS` rounds have been grown.

A :class:`GrownLevel` is one level added in one base condition (``where``: the values of the
base-condition factors that vary in the table; empty when none vary). The results file
records them all (``results_format.GROWN_LEVELS``, :func:`to_record`), and a protocol read
back with them (:meth:`Protocol.with_grown`) expands to the grown trials too, so the
analysis, the report, ``status`` and a resumed run count them as the protocol's. A new level
only adds trials: no existing trial's settings, id or pairing block changes.

The selection itself (``stats.tuning``, which ``spec`` may not import) is read by
``bnstudy.study`` and handed in as :class:`Edge` objects; the rounds are run by
``bnstudy.execution.grow``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from bnstudy.results_format import GROWN_LEVELS
from bnstudy.spec.design import TuneDesign
from bnstudy.spec.factors import Factors

#: The factor of a tuning factor grown by ``bnstudy run --extend-grid`` whose protocol
#: declares none (``extend`` not set): each new level is the edge times or divided by 3.
DEFAULT_FACTOR = 3.0
#: Rounds of growth at most, over the whole study (recorded rounds count): each round trains
#: its new levels before the next looks at the selection again.
MAX_ROUNDS = 5
#: New levels are rounded to this many significant digits (0.1 / 3 -> 0.0333).
SIGNIFICANT_DIGITS = 3

Side = Literal["low", "high"]
#: A base condition: (factor, level) pairs, in the order of the selection's base columns.
Where = tuple[tuple[str, Any], ...]


@dataclasses.dataclass(frozen=True)
class GrownLevel:
    """One level of tuning factor ``factor`` added in round ``round`` (1, 2, ...) to the base
    condition ``where`` (every trial of the protocol matching it gets the level)."""

    factor: str
    level: float | int
    round: int
    where: Where = ()

    def matches(self, settings: Mapping[str, Any]) -> bool:
        """Whether a trial's settings lie in this level's base condition."""
        return all(settings.get(k) == v for k, v in self.where)

    @property
    def key(self) -> tuple[str, float | int, Where]:
        """What makes two grown levels the same (the round says only when)."""
        return (self.factor, self.level, self.where)


@dataclasses.dataclass(frozen=True)
class Edge:
    """One selection at an edge of the grid: tuning factor ``factor``'s selected ``level`` is
    the ``side`` ("low" or "high") of the levels tried in base condition ``where``."""

    factor: str
    side: Side
    level: float | int
    where: Where = ()


@dataclasses.dataclass(frozen=True)
class Growth:
    """How one tuning factor grows: by ``factor`` (> 1), never past ``bounds`` (low, high;
    None: not declared), as integers when its levels are (``batch_size``)."""

    factor: float
    bounds: tuple[float, float] | None = None
    integer: bool = False


def growth_settings(
    tune: Mapping[str, TuneDesign],
    levels: Mapping[str, Sequence[Any]],
    force: bool | None = None,
) -> dict[str, Growth]:
    """The tuning factors a run grows, and how.

    ``tune``: each tuning factor's settings (``Design.tune_settings``); ``levels``: its
    levels in the protocol. ``force`` None (the default): the factors the protocol declares
    ``extend: true``; True (``--extend-grid``): every tuning factor with positive numeric
    levels, by its declared ``factor`` or :data:`DEFAULT_FACTOR`; False
    (``--no-extend-grid``): none.
    """
    if force is False:
        return {}
    out = {}
    for name, setting in tune.items():
        values = list(levels.get(name, ()))
        numeric = values and all(_positive_number(v) for v in values)
        if not numeric or not (setting.extend or force):
            continue
        out[name] = Growth(
            float(setting.factor or DEFAULT_FACTOR),
            setting.bounds,
            all(isinstance(v, int) for v in values),
        )
    return out


def _positive_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def stable(value: float, integer: bool = False) -> float | int:
    """``value`` as a grown level is written: an integer, or a float of
    :data:`SIGNIFICANT_DIGITS` significant digits (the same text, hence the same trial id,
    on every machine)."""
    if integer:
        return int(round(value))
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def next_level(edge: Edge, growth: Growth) -> float | int | None:
    """The level beyond ``edge``: the edge divided (low) or multiplied (high) by the factor,
    rounded (:func:`stable`), clipped at the declared bound; None where there is nothing
    beyond (the edge at or past its bound, or a step that rounds back onto the edge or
    leaves the positive numbers)."""
    level = float(edge.level)
    low, high = growth.bounds if growth.bounds is not None else (None, None)
    bound = low if edge.side == "low" else high
    if bound is not None and (
        math.isclose(level, bound) or (level < bound if edge.side == "low" else level > bound)
    ):
        return None
    raw = level / growth.factor if edge.side == "low" else level * growth.factor
    new = stable(raw, growth.integer)
    if bound is not None and (new < bound if edge.side == "low" else new > bound):
        new = float(bound)  # the declared bound itself, exactly as written
        if growth.integer:  # the integer nearest it on its inner side
            new = math.ceil(bound) if edge.side == "low" else math.floor(bound)
    if new <= 0 or math.isclose(new, level) or (new > level) != (edge.side == "high"):
        return None
    return new


def plan_round(
    edges: Iterable[Edge],
    growth: Mapping[str, Growth],
    grown: Sequence[GrownLevel],
    round_: int,
) -> list[GrownLevel]:
    """The levels round ``round_`` adds: one beyond each open edge of a growing factor
    (``growth``), once per (factor, level, base condition), none already grown (``grown``),
    in the order of ``edges``. Nothing grows past an edge where the next level is one the
    factor cannot take (:func:`valid_level`: a dropout of 1.5)."""
    seen = {g.key for g in grown}
    out = []
    for edge in edges:
        how = growth.get(edge.factor)
        if how is None:
            continue
        level = next_level(edge, how)
        if level is None or not valid_level(edge.factor, level):
            continue
        new = GrownLevel(edge.factor, level, round_, tuple(edge.where))
        if new.key not in seen:
            seen.add(new.key)
            out.append(new)
    return out


def valid_level(factor: str, level: Any) -> bool:
    """Whether factor ``factor`` can take ``level`` as a protocol could write it (a grown
    dropout of 1.5 cannot)."""
    field = Factors.model_fields.get(factor)
    if field is None:
        return False
    try:
        TypeAdapter(field.annotation).validate_python([level])
    except ValidationError:
        return False
    return True


def last_round(grown: Iterable[GrownLevel]) -> int:
    """The latest round grown (0 when none)."""
    return max((g.round for g in grown), default=0)


def merge(first: Iterable[GrownLevel], then: Iterable[GrownLevel]) -> tuple[GrownLevel, ...]:
    """Both, in order, each (factor, level, base condition) once (its first record kept)."""
    out: dict[tuple, GrownLevel] = {}
    for g in (*first, *then):
        out.setdefault(g.key, g)
    return tuple(out.values())


# -- the record in the results file ---------------------------------------------------------


def to_record(grown: Iterable[GrownLevel]) -> dict[str, list[dict[str, Any]]]:
    """JSON-ready: ``{factor: [{"level", "round", "where": {factor: level}}, ...]}``, in the
    order grown."""
    out: dict[str, list[dict[str, Any]]] = {}
    for g in grown:
        out.setdefault(g.factor, []).append(
            {"level": g.level, "round": g.round, "where": dict(g.where)}
        )
    return out


def from_record(record: Any) -> tuple[GrownLevel, ...]:
    """:func:`to_record`'s object read back (ValueError when it is not one)."""
    if not isinstance(record, Mapping):
        raise ValueError(f"expected an object factor -> levels; got {record!r}")
    out = []
    for factor, entries in record.items():
        if not isinstance(entries, list):
            raise ValueError(f"{factor}: expected a list of levels; got {entries!r}")
        for entry in entries:
            try:
                level, round_, where = entry["level"], entry["round"], entry.get("where", {})
            except (TypeError, KeyError):
                raise ValueError(f"{factor}: not a grown level: {entry!r}") from None
            if not _positive_number(level) or not isinstance(round_, int):
                raise ValueError(f"{factor}: not a grown level: {entry!r}")
            if not isinstance(where, Mapping):
                raise ValueError(f"{factor}: not a base condition: {where!r}")
            out.append(GrownLevel(str(factor), level, round_, tuple(where.items())))
    return tuple(out)


def recorded(metadata: Mapping[str, str]) -> tuple[GrownLevel, ...]:
    """The levels a results file's metadata (prefix stripped) records as grown (none when it
    records none); ValueError when the record cannot be read."""
    text = metadata.get(GROWN_LEVELS)
    if not text:
        return ()
    try:
        return from_record(json.loads(text))
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise ValueError(f"unreadable {GROWN_LEVELS} in the results' metadata ({exc})") from None


def describe(grown: Iterable[GrownLevel]) -> list[str]:
    """One line per grown factor: ``lr grown: 0.01 (round 1), 0.00333 (round 2)`` (a level
    added in several base conditions is named once, with how many)."""
    per_factor: dict[str, dict[tuple[float | int, int], int]] = {}
    for g in grown:
        levels = per_factor.setdefault(g.factor, {})
        levels[(g.level, g.round)] = levels.get((g.level, g.round), 0) + 1
    lines = []
    for factor, levels in per_factor.items():
        parts = [
            f"{show_level(level)} (round {round_}" + (f", {n} conditions)" if n > 1 else ")")
            for (level, round_), n in levels.items()
        ]
        lines.append(f"{factor} grown: {', '.join(parts)}")
    return lines


def show_level(level: float | int) -> str:
    """A level as the lines about growth show it (``0.00333``, ``3``)."""
    return f"{level:g}" if isinstance(level, float) else str(level)


def plain(value: Any) -> Any:
    """A table's value (a numpy scalar) as the standard-library value JSON and ids take."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value
