"""The optimizer-treatment protocol the treatment tests parse (tests/spec) and run end to end
(tests/report): adamw against sgd on the synthetic set, at two imbalance ratios, one epoch.
Tests import it (``from optimizer_protocol import optimizer_text``; pytest puts tests/ on
``sys.path``) and append what they are about."""

from __future__ import annotations

#: The treatment's section: every optimizer against sgd.
OPTIMIZER = "treatment: {factor: optimizer, control: sgd}\n"


def optimizer_text(*, name: str = "t", seeds: int = 3, head: str = "[plain, bn]") -> str:
    """The protocol's YAML up to its factors (the treatment, analysis and hypotheses are the
    caller's); ``head`` is YAML written as given."""
    return (
        f"name: {name}\n"
        f"seeds: {seeds}\n"
        "factors:\n"
        "  architecture: mlp\n"
        f"  head: {head}\n"
        "  dataset: synthetic\n"
        "  imbalance_ratio: [1, 10]\n"
        "  train_per_class: 20\n"
        "  epochs: 1\n"
        "  batch_size: 16\n"
        "  optimizer: [sgd, adamw]\n"
    )
