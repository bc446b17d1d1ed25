"""The tiny protocol the runner, CLI and progress tests run: 2 heads x 2 imbalance ratios on
the synthetic set, a few seeds, small and quick. Tests import it (``from tiny_protocol import
tiny, tiny_text``; pytest puts tests/ on ``sys.path``) and pass what they are about."""

from __future__ import annotations

from bnstudy import study
from bnstudy.spec.loading import parse_protocol
from bnstudy.spec.protocol import Protocol


def tiny_text(
    *,
    name: str = "tiny",
    description: str | None = None,
    seeds: int = 2,
    imbalance_ratio: int | str = "[1, 10]",
    epochs: int = 2,
    batch_size: int | str = 32,
    extra: str = "",
) -> str:
    """The protocol's YAML, byte for byte what the tests write and parse. Values are YAML
    written as given; ``description`` is a line left out when None; ``extra`` is YAML appended
    after ``control`` (an ``analysis:`` block, say)."""
    return (
        f"name: {name}\n"
        + (f"description: {description}\n" if description is not None else "")
        + f"seeds: {seeds}\n"
        "factors:\n"
        "  architecture: mlp\n"
        "  head: [plain, bn]\n"
        "  dataset: synthetic\n"
        f"  imbalance_ratio: {imbalance_ratio}\n"
        "  train_per_class: 40\n"
        f"  epochs: {epochs}\n"
        f"  batch_size: {batch_size}\n"
        "control: plain\n" + extra
    )


def tiny(**settings) -> Protocol:
    """The protocol parsed against the study's registries; ``settings`` as for
    :func:`tiny_text`."""
    return parse_protocol(tiny_text(**settings), "tiny.yaml", known=study.known_names())
