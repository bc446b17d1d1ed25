"""Reading a protocol: the strict YAML loader, :func:`load_protocol` and :func:`parse_protocol`
(which raise :class:`~bnstudy.spec.errors.ProtocolError`, one line per problem), and the
peeks at a file taken before it is validated (:func:`plugins_of`, :func:`trial_code_of`,
:func:`protocol_fields`)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from bnstudy.spec.analysis_settings import MetricSpec, TuneSpec
from bnstudy.spec.claims import Hypothesis, Interaction
from bnstudy.spec.errors import ProtocolError, one_line, show
from bnstudy.spec.fields import PLUGIN
from bnstudy.spec.plugins import resolve_entries
from bnstudy.spec.protocol import Protocol
from bnstudy.spec.stages import PretrainStage
from bnstudy.spec.treatment import Treatment
from bnstudy.spec.trial_function import TRIAL_FUNCTION, split, with_module_as_plugin


def load_protocol(path: str | Path, known: Mapping[str, Sequence[str]] | None = None) -> Protocol:
    """Read and validate a protocol file; raises :class:`ProtocolError` with a one-line message."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProtocolError(f"{path}: protocol file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{path}: cannot read protocol file: {exc}") from None
    return parse_protocol(
        text, source=str(path), known=known, source_dir=str(path.resolve().parent)
    )


def with_factor_levels(
    protocol: Protocol, factor: str, levels: Sequence[Any], why: str
) -> Protocol:
    """``protocol`` with factor ``factor``'s levels replaced by ``levels`` (``bnstudy run
    --precision``), its text rewritten to say so: the text is what a results file records,
    and what its readers expand, so the rows it names are the trials that ran. The new text
    is the protocol's YAML with the factor set, a comment ``why`` on top and the text as
    written below, commented out. Raises :class:`ProtocolError` for a level the factor
    does not take."""
    data = yaml.load(protocol.source_text, Loader=_StrictLoader)  # noqa: S506 - SafeLoader
    data.setdefault("factors", {})[factor] = list(levels)
    written = "".join(f"# {line}\n" for line in protocol.source_text.splitlines())
    text = (
        f"# {why}\n{yaml.safe_dump(data, sort_keys=False)}# -- the protocol as written:\n{written}"
    )
    changed = parse_protocol(text, source=f"{why}", source_dir=protocol.source_dir)
    return changed.with_grown(protocol.grown)


def plugins_of(path: str | Path) -> tuple[str, ...]:
    """The ``plugins`` of protocol file ``path`` (with its ``trial:`` function's code), read
    before the rest is validated: the names and head options the rest refers to may come
    from them. () when the file has none, or cannot be read as a protocol (its validation
    then says why)."""
    data = _peek(path)
    entries = with_module_as_plugin(data).get("plugins") if data is not None else None
    if not isinstance(entries, list):
        return ()
    if not all(isinstance(e, str) and re.fullmatch(PLUGIN, e) for e in entries):
        return ()
    return resolve_entries(entries, Path(path).resolve().parent)


def trial_code_of(path: str | Path) -> str | None:
    """The entry among :func:`plugins_of` that protocol file ``path``'s ``trial:`` names (its
    code, made absolute as there), so an error importing it names ``trial:``; None without
    one (or unreadable: its validation says why)."""
    data = _peek(path)
    text = data.get("trial") if data is not None else None
    if not isinstance(text, str) or not re.fullmatch(TRIAL_FUNCTION, text):
        return None
    (entry,) = resolve_entries([split(text)[0]], Path(path).resolve().parent)
    return entry


def _peek(path: str | Path) -> dict[Any, Any] | None:
    """The top-level mapping of YAML file ``path``; None when it is unreadable or no mapping."""
    try:
        data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def protocol_fields(path: str | Path) -> dict[Any, Any] | None:
    """The top-level mapping of ``path`` when its content reads as a protocol (YAML whose
    mapping has ``factors``), valid or not; else None. For telling a user who gave a protocol
    where a results file belongs which command takes it."""
    try:
        with open(path, "rb") as handle:  # a protocol is a few KiB: no need to read a big file
            head = handle.read(_PROTOCOL_MAX_BYTES + 1)
        if len(head) > _PROTOCOL_MAX_BYTES:
            return None
        data = yaml.load(head.decode("utf-8"), Loader=_StrictLoader)  # noqa: S506
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) and "factors" in data else None


_PROTOCOL_MAX_BYTES = 1 << 20


def parse_protocol(
    text: str,
    source: str = "<protocol>",
    known: Mapping[str, Sequence[str]] | None = None,
    source_dir: str = "",
) -> Protocol:
    """Validate protocol YAML text.

    ``known`` maps ``architecture``, ``head`` and ``dataset`` to their registered names;
    without it names are not checked (used when reading a protocol back from a results file).
    """
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ProtocolError(f"{where}: invalid YAML: {problem}") from None
    if data is None:
        raise ProtocolError(f"{source}: the protocol is empty (no fields, only comments or blanks)")
    if not isinstance(data, dict):
        raise ProtocolError(
            f"{source}: expected a mapping of protocol fields at the top level, "
            f"got {type(data).__name__}"
        )
    try:
        return Protocol.model_validate(
            {**data, "source_text": text, "source_dir": source_dir}, context=dict(known or {})
        )
    except ValidationError as exc:
        raise ProtocolError(one_line(exc, source, _allowed_keys)) from None


class _StrictLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses a key given twice in one mapping.

    Plain YAML loading keeps the last of ``seeds: 2`` ... ``seeds: 7`` silently; in a
    pre-registered protocol that is a mistake to point at, not to guess about.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key; the base class reports it
                continue
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {show(key)} (first given on line {first.start_mark.line + 1})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping
)


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The field names of the model found at ``loc`` inside a Protocol."""
    model: Any = Protocol
    for part in loc:
        if isinstance(part, int) and model is Hypothesis:  # an element of hypotheses
            continue
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            break
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        elif part == "metrics":
            model = MetricSpec
        elif part == "pretraining":
            model = PretrainStage
        elif part == "hypotheses":
            model = Hypothesis
        elif part == "interaction":
            model = Interaction
        elif part == "tune":
            model = TuneSpec
        elif part == "treatment":
            model = Treatment
    # The names as written in YAML (an alias such as a hypothesis' ``in``).
    return [
        field.alias or name
        for name, field in model.model_fields.items()
        if name not in ("source_text", "source_dir")
    ]
