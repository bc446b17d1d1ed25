"""The study protocol: the model of a whole protocol file, and its expansion into trials.

A protocol declares factors (lists of values); their full factorial product times the seeds
is the set of trials (:mod:`bnstudy.spec.trial`). The sections live in their own modules
(:mod:`~bnstudy.spec.factors`, :mod:`~bnstudy.spec.stages`,
:mod:`~bnstudy.spec.analysis_settings`, :mod:`~bnstudy.spec.claims`), their cross-checks in
:mod:`~bnstudy.spec.checks` and reading YAML in :mod:`~bnstudy.spec.loading`.

The names of registered architectures, heads and datasets are handed in through the
validation context (see ``bnstudy.study.known_names``), so a protocol read back from a
results file can be parsed on a machine without torch.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, PrivateAttr, field_validator, model_validator

from bnstudy.data.spec import SPECS as DATASET_SPECS
from bnstudy.data.spec import identity_options, resolve_options
from bnstudy.spec import arch_options, checks
from bnstudy.spec.analysis_settings import DEFAULT_TRANSFORMS, AnalysisSettings
from bnstudy.spec.claims import Hypothesis
from bnstudy.spec.design import Design, MetricDesign
from bnstudy.spec.errors import FieldError, show
from bnstudy.spec.factors import Factors, with_all_train
from bnstudy.spec.fields import (
    DEFAULT_MAX_TRIALS,
    PLUGIN,
    STRICT,
    STUDY_NAME,
    Name,
    PositiveInt,
    Seed,
    TrialFunctionText,
    as_list,
    check_unique,
)
from bnstudy.spec.grow import GrownLevel, merge
from bnstudy.spec.head_options import DEFAULTS as HEAD_OPTION_DEFAULTS
from bnstudy.spec.head_options import options_of as head_options_of
from bnstudy.spec.head_options import resolve as resolve_head_options
from bnstudy.spec.plugins import resolve_entries
from bnstudy.spec.stages import PretrainStage
from bnstudy.spec.treatment import Treatment, dependent_options, match_level
from bnstudy.spec.trial import ARM, NO_PRETRAIN, TREATMENT, Trial, arm_of
from bnstudy.spec.trial_function import with_module_as_plugin


class Protocol(BaseModel):
    """A validated study protocol. Build it with :func:`load_protocol` or :func:`parse_protocol`."""

    model_config = STRICT

    name: Annotated[str, Field(pattern=STUDY_NAME, max_length=100)]
    description: str = ""
    seeds: list[Seed] = Field(min_length=1)
    factors: Factors
    #: The head every other head is compared with: short for ``treatment: {factor: head,
    #: control: ...}``. Give this or ``treatment``, not both.
    control: Name | None = None
    #: Which factor's levels are the arms, and which level is the control (see
    #: :mod:`bnstudy.spec.treatment`); read it as :attr:`treatment_factor` and
    #: :attr:`control_level`, which resolve the short form.
    treatment: Treatment | None = None
    #: Options per dataset, e.g. ``{cifar10: {path: ~/data/cifar-10-batches-py}}``. Options
    #: that change the data are part of trial identity; ``path`` only locates it.
    datasets: dict[str, dict[str, Any] | None] = Field(default={})
    #: Options per architecture, e.g. ``{mlp: {width: 512, depth: 3}}`` (see
    #: ``bnstudy.spec.arch_options``); those not at their defaults are part of trial identity.
    architectures: dict[str, dict[str, Any] | None] = Field(default={})
    #: Named pre-training stages, the levels of the ``pretrain`` factor besides ``none``.
    pretraining: dict[Name, PretrainStage] = Field(default={})
    #: Combinations not to run: each entry maps factor names to a value or a list of
    #: values; a trial matching every key of an entry is left out.
    exclude: list[dict[str, Any]] = Field(default=[])
    analysis: AnalysisSettings = AnalysisSettings()
    #: Pre-registered claims (see ``bnstudy.spec.claims``); their hashes are recorded with
    #: the first results, and one added later is exploratory.
    hypotheses: list[Hypothesis] = Field(default=[])
    #: Refuse protocols that expand to more trials than this (a guard against typos).
    max_trials: PositiveInt = DEFAULT_MAX_TRIALS
    #: Code that registers the protocol's own networks (see ``bnstudy.spec.plugins``): ``.py``
    #: files, relative to the protocol's folder, or importable module names.
    plugins: list[Annotated[str, Field(pattern=PLUGIN)]] = Field(default=[])
    #: The protocol's own trial function, ``CODE:FUNCTION`` (see
    #: ``bnstudy.spec.trial_function``; its code joins ``plugins``); None: the built-in trial.
    trial: TrialFunctionText | None = None
    #: The YAML text the protocol was read from (recorded in every output).
    source_text: str = Field(default="", exclude=True, repr=False)
    #: The folder of the protocol file (plugin files are relative to it); "" if not a file.
    source_dir: str = Field(default="", exclude=True, repr=False)
    #: Levels of tuning factors a run added past the grid's edges (``bnstudy.spec.grow``),
    #: recorded with the results: :meth:`expand` includes their trials. Set by
    #: :meth:`with_grown`, never by the protocol file.
    _grown: tuple[GrownLevel, ...] = PrivateAttr(default=())

    @field_validator("name", mode="before")
    @classmethod
    def _safe_name(cls, value: Any) -> Any:
        if isinstance(value, str) and not re.fullmatch(STUDY_NAME, value):
            raise ValueError(
                f"{show(value)} cannot be a file name (results, report); use letters, digits, "
                "'_', '.' and '-', starting with a letter or digit; free text goes in "
                "'description'"
            )
        return value

    @field_validator("seeds", mode="before")
    @classmethod
    def _count_or_list(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"expected a count or a list of seeds; got {value!r}")
        if isinstance(value, int):
            if value < 1:
                raise ValueError(f"a seed count must be at least 1, got {value}")
            if value > DEFAULT_MAX_TRIALS * 10:  # never materialise a billion seeds
                raise ValueError(
                    f"a seed count of {value} is beyond any study this tool can run "
                    f"(at most {DEFAULT_MAX_TRIALS * 10})"
                )
            return range(value)
        return value

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, values: list[int]) -> list[int]:
        return check_unique(values)

    @model_validator(mode="before")
    @classmethod
    def _trial_module_is_a_plugin(cls, data: Any) -> Any:
        return with_module_as_plugin(data)

    @model_validator(mode="before")
    @classmethod
    def _all_train(cls, data: Any) -> Any:
        """``train_per_class: all`` in exclusions and hypotheses as the factor holds it."""
        return with_all_train(data)

    @model_validator(mode="before")
    @classmethod
    def _one_control(cls, data: Any) -> Any:
        """``control:`` (the head's) or ``treatment:``: exactly one of them."""
        if not isinstance(data, dict):
            return data
        given = {k for k in ("control", "treatment") if data.get(k) is not None}
        if given == {"control", "treatment"}:
            raise FieldError(
                ("control",),
                "give the control once: control: is short for treatment: {factor: head, "
                "control: ...}; with treatment: put it there",
            )
        if not given:
            raise FieldError(
                ("control",),
                "required field is missing (or give treatment: {factor: ..., control: ...})",
            )
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Protocol:
        checks.check_all(self)
        return self

    def warnings(self) -> list[str]:
        """What this protocol allows but probably does not mean, one line each (see
        :func:`bnstudy.spec.checks.warnings`); ``validate`` and ``run`` print them."""
        return checks.warnings(self)

    def n_trials_bound(self) -> str:
        gross = len(self.seeds) * self.factors.count()
        return f"{gross:,}" if not self.exclude else f"up to {gross:,}"

    # -- options of the sections ----------------------------------------------------------

    def architecture_options(self, name: str) -> dict[str, int]:
        """Every option of architecture ``name`` (given ones checked, the rest at defaults)."""
        return arch_options.resolve(name, self.architectures.get(name))

    def dataset_options(self, name: str) -> dict[str, Any]:
        """Every option of dataset ``name`` (given ones checked, the rest at defaults)."""
        return resolve_options(name, self.datasets.get(name))

    def stage_options(self, name: str) -> dict[str, Any]:
        """Every option of pre-training stage ``name``'s dataset (its own, or ``datasets:``)."""
        stage = self.pretraining[name]
        given = stage.options if stage.options is not None else self.datasets.get(stage.dataset)
        return resolve_options(stage.dataset, given)

    def stage_identity(self, name: str) -> str:
        """Canonical JSON of what pre-training stage ``name`` does ("" for ``none``).

        Its settings, not its name: renaming a stage keeps its trials, changing it does not.
        """
        if name == NO_PRETRAIN:
            return ""
        stage = self.pretraining[name]
        given = stage.options if stage.options is not None else self.datasets.get(stage.dataset)
        data = identity_options(stage.dataset, given) if stage.dataset in DATASET_SPECS else {}
        settings = stage.model_dump(exclude={"options"})
        settings["data_options"] = (
            json.dumps(data, sort_keys=True, separators=(",", ":")) if data else ""
        )
        return json.dumps(settings, sort_keys=True, separators=(",", ":"))

    # -- what the analysis reads ----------------------------------------------------------

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.source_text.encode()).hexdigest()

    def plugin_entries(self) -> tuple[str, ...]:
        """``plugins`` with each file made absolute (workers may start in another folder)."""
        return resolve_entries(self.plugins, Path(self.source_dir or "."))

    @property
    def treatment_factor(self) -> str:
        """The factor whose levels are the arms (``head`` unless ``treatment`` says)."""
        return self.treatment.factor if self.treatment is not None else TREATMENT

    @property
    def control_level(self) -> Any:
        """The control as a level of :attr:`treatment_factor` (``0`` written for a float
        factor is its level ``0.0``); None when it is none of its levels."""
        given = self.treatment.control if self.treatment is not None else self.control
        return match_level(given, getattr(self.factors, self.treatment_factor))

    @property
    def variants(self) -> list[Any]:
        """The treatment factor's levels other than the control."""
        levels = getattr(self.factors, self.treatment_factor)
        return [level for level in levels if level != self.control_level]

    def design(self) -> Design:
        """The plain-data design description ``stats`` and ``report`` read.

        The head treatment without arm options (see :meth:`arm_options`) is analysed by the
        ``head`` column, exactly as before head options and other treatments existed; any
        other treatment by the derived ``arm`` column (see :func:`arm_of`: ``adamw``,
        ``dropout 0.3``, ``bn[bn_momentum=0.01]``), with ``treatment_factor`` naming the
        factor (``head`` too, whose arms then carry options: "Each head variant", never
        "Each arm variant").
        """
        a = self.analysis
        arms = self.arm_options
        factor = self.treatment_factor
        by_arm = bool(arms) or factor != TREATMENT
        return Design(
            treatment=ARM if by_arm else TREATMENT,
            control=self.control_arm if by_arm else self.control_level,
            variants=tuple(self.variant_arms if by_arm else self.variants),
            treatment_factor=factor if by_arm else "",
            conditions=tuple(f for f in Factors.model_fields if f != factor and f not in arms),
            moderators={
                m: a.transforms.get(m, DEFAULT_TRANSFORMS.get(m, "identity"))
                for m in self.moderators
            },
            metrics={
                name: MetricDesign(spec.direction, spec.equivalence_margin)
                for name, spec in a.metrics.items()
            },
            confidence=a.confidence,
            correction=a.correction,
            family=a.family,
            bootstrap_replicates=a.bootstrap.replicates,
            bootstrap_seed=a.bootstrap.seed,
            failed_score=a.failed_score,
            tuning=tuple(a.tune),
            select_by=a.select_by if a.tune else None,
            tune_settings={name: spec.design() for name, spec in a.tune.items()},
        )

    @property
    def moderators(self) -> list[str]:
        if self.analysis.moderators is not None:
            return list(self.analysis.moderators)
        arms = self.arm_options
        factor = self.treatment_factor
        return [f for f in self.factors.varying() if f != factor and f not in arms]

    # -- arms -----------------------------------------------------------------------------

    @property
    def arm_options(self) -> tuple[str, ...]:
        """Head options that belong to the arms: set (away from the default) in this protocol
        while some of its heads do not take them.

        Such an option cannot be a condition: the heads that do not take it have one trial
        per seed, shared as the control of every level (``plain`` against ``bn`` at two
        momenta is three arms: ``plain``, ``bn``, ``bn[bn_momentum=0.01]``). An option every
        head takes stays a condition, like any other factor. Under another treatment the
        heads are a condition; an option then belongs to the arms when it applies at some
        levels of a head-option treatment only (:func:`~bnstudy.spec.treatment.
        dependent_options`: ``dropout_at`` under ``dropout``).
        """
        if self.treatment_factor != TREATMENT:
            if self.treatment_factor not in HEAD_OPTION_DEFAULTS:
                return ()
            return dependent_options(self)
        heads = self.factors.head
        return tuple(
            name
            for name, default in HEAD_OPTION_DEFAULTS.items()
            if getattr(self.factors, name) != [default]
            and not all(name in head_options_of(h) for h in heads)
        )

    @property
    def control_arm(self) -> str:
        """The control's arm label (its level, plus any arm option it takes at a
        non-default)."""
        return self.variant_arms_and_control()[0]

    @property
    def variant_arms(self) -> list[str]:
        """The arm labels other than the control, in expansion order."""
        return self.variant_arms_and_control()[1]

    def variant_arms_and_control(self) -> tuple[str, list[str]]:
        factor, control_level = self.treatment_factor, self.control_level
        labels = {arm_of(c): c[factor] for c in self.combinations()}
        control = next(a for a, level in labels.items() if level == control_level)
        return control, [a for a in labels if a != control]

    def arm_named(self, value: Any) -> str | None:
        """The arm a hypothesis names by ``value``: an arm's label (``bn[bn_momentum=0.01]``,
        ``dropout 0.3``) or a level of the treatment factor (``adamw``, ``0.3``); None when
        no arm is meant."""
        control, variants = self.variant_arms_and_control()
        arms = [control, *variants]
        if isinstance(value, str) and value in arms:
            return value
        level = match_level(value, getattr(self.factors, self.treatment_factor))
        if level is None:
            return None
        label = arm_of({"treatment": self.treatment_factor, self.treatment_factor: level})
        return label if label in arms else None

    # -- expansion ------------------------------------------------------------------------

    @property
    def n_trials(self) -> int:
        """How many trials :meth:`expand` returns, without building them."""
        return len(self.seeds) * len(self.combinations())

    @property
    def grown(self) -> tuple[GrownLevel, ...]:
        """The levels grown past the tuning grid's edges (:mod:`bnstudy.spec.grow`), in the
        order grown; () for the protocol as written."""
        return self._grown

    def with_grown(self, levels: Iterable[GrownLevel]) -> Protocol:
        """This protocol with ``levels`` grown too (after those it has): it expands to
        their trials besides its own; every trial it had keeps its id."""
        grown = merge(self._grown, levels)
        if grown == self._grown:
            return self
        copy = self.model_copy()
        copy._grown = grown
        return copy

    def combinations(self) -> list[dict[str, Any]]:
        """Factor settings per trial of one seed, exclusions applied, treatment fastest;
        then those of the grown levels (:attr:`grown`), in the order grown."""
        combos = self._combinations()
        if self._grown:
            combos += self._grown_combinations(combos)
        return combos

    def _grown_combinations(self, combos: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each grown level's combinations: the protocol's, in its base condition, with the
        tuning factor at the grown level (every arm and every level of the other factors);
        none twice, none the protocol already has."""
        seen = {_key(c) for c in combos}
        out = []
        for g in self._grown:
            for combo in self._combinations({g.factor: [g.level]}):
                if g.matches(combo) and (key := _key(combo)) not in seen:
                    seen.add(key)
                    out.append(combo)
        return out

    def _combinations(self, levels_of: Mapping[str, list] | None = None) -> list[dict[str, Any]]:
        """The protocol's combinations, with ``levels_of`` replacing factors' levels."""
        names = list(Factors.model_fields)
        names.remove(self.treatment_factor)
        names.append(self.treatment_factor)
        levels = [(levels_of or {}).get(n, getattr(self.factors, n)) for n in names]
        combos = (dict(zip(names, combo, strict=True)) for combo in itertools.product(*levels))
        kept = [c for c in combos if not any(_matches(c, e) for e in self.exclude)]
        kept = self._resolve_head_options(kept)
        arch = {name: self._architecture_identity(name) for name in self.factors.architecture}
        kept = [{**c, "arch_options": arch[c["architecture"]]} for c in kept]
        data = {name: self._data_identity(name) for name in self.factors.dataset}
        stages = {name: self.stage_identity(name) for name in self.factors.pretrain}
        return [
            {
                **c,
                "data_options": data[c["dataset"]],
                "pretrain_stage": stages[c["pretrain"]],
                "treatment": self.treatment_factor,
                "trial_function": self.trial or "",
            }
            for c in kept
        ]

    def _architecture_identity(self, name: str) -> str:
        """Canonical JSON of architecture ``name``'s options not at defaults ("" if none)."""
        options = arch_options.identity_options(name, self.architectures.get(name))
        return json.dumps(options, sort_keys=True, separators=(",", ":")) if options else ""

    def _resolve_head_options(self, combos: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Options a head does not take at their defaults, duplicates dropped (first kept),
        and each combination's ``arm_options`` (its non-default arm options)."""
        arms = self.arm_options
        unique: dict[tuple, dict[str, Any]] = {}
        for combo in combos:
            resolved = resolve_head_options(combo)
            unique.setdefault(tuple(resolved.items()), resolved)
        return [
            {
                **c,
                "arm_options": ",".join(n for n in arms if c[n] != HEAD_OPTION_DEFAULTS[n]),
            }
            for c in unique.values()
        ]

    def _data_identity(self, name: str) -> str:
        """Canonical JSON of the options that change dataset ``name`` ("" at the defaults)."""
        if name not in DATASET_SPECS:
            return ""
        options = identity_options(name, self.datasets.get(name))
        return json.dumps(options, sort_keys=True, separators=(",", ":")) if options else ""

    def expand(self) -> list[Trial]:
        """The full factorial design less exclusions: one trial per seed x combination
        (the grown levels' combinations after the protocol's own, see :attr:`grown`).

        Seeds vary slowest and the treatment fastest, so the arms of a pairing block are
        scheduled next to each other and a partial run holds complete blocks.
        """
        combos = self.combinations()
        return [Trial(seed=seed, **combo) for seed in self.seeds for combo in combos]


def _matches(settings: Mapping[str, Any], exclusion: Mapping[str, Any]) -> bool:
    return all(settings[k] in as_list(v) for k, v in exclusion.items())


def _key(combo: Mapping[str, Any]) -> tuple:
    """A combination as a hashable value (its settings are scalars)."""
    return tuple(sorted(combo.items()))
