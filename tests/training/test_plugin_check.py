"""Plugins checked before training (``training.plugin_check``): every plugin network goes
through the built-in trial's passes on a batch of 2 in ``validate``; a plugin architecture's
declared options are set by ``architectures:``, checked and recorded.

Each test runs ``bnstudy`` in a fresh process, so the plugin's networks never leak into this
test session's registries.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

PLUGIN = """\
from pathlib import Path

import torch
from torch import nn

from bnstudy.models import register_architecture, register_head


class Narrow(nn.Module):
    def __init__(self, input_shape, width, depth):
        super().__init__()
        features = int(torch.tensor(input_shape).prod())
        layers = [nn.Flatten()]
        for _ in range(depth):
            layers += [nn.Linear(features, width), nn.ReLU()]
            features = width
        self.net = nn.Sequential(*layers)
        self.out_features = width

    def forward(self, x):
        return self.net(x)


@register_architecture(
    "narrow", inputs=("any",), ends_in_norm=False, pooling="none", tail="linear -> ReLU",
    options={"width": (8, 1, 64, "units per layer"), "depth": (1, 1, 4)},
)
def narrow(input_shape, *, width, depth):  # no defaults here: every option is given
    with open(Path(__file__).with_name("built.txt"), "a") as log:
        log.write(f"width={width} depth={depth}\\n")
    return Narrow(input_shape, width, depth)


class MapHead(nn.Module):
    \"\"\"Convolves the features as a one-channel map: an nn.ReLU on 4-D maps, then flattened.\"\"\"

    def __init__(self, d, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(2 * d, num_classes)

    def forward(self, x):
        maps = self.relu(self.conv(x.view(len(x), 1, -1, 1)))
        return self.fc(maps.flatten(1))


class Wide(nn.Module):
    \"\"\"Expects 64 features whatever the body gives.\"\"\"

    def __init__(self, d, num_classes):
        super().__init__()
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.fc(x)


class Dropped(nn.Module):
    def __init__(self, d, num_classes, dropout=0.3):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(d, num_classes)

    def forward(self, x):
        return self.fc(self.drop(x))


class FixedNorm(nn.Module):
    def __init__(self, d, num_classes):
        super().__init__()
        self.bn = nn.BatchNorm1d(d, momentum=0.01)
        self.fc = nn.Linear(d, num_classes)

    def forward(self, x):
        return self.fc(self.bn(x))


register_head("maps")(MapHead)
register_head("wide")(Wide)
register_head("hard_dropout")(Dropped)  # a rate of 0.3 it does not declare
register_head("dropout_declared", options=("dropout",))(Dropped)
register_head("dropout_ignored", options=("dropout",))(lambda d, c, dropout: Dropped(d, c))
register_head("fixed_momentum")(FixedNorm)
"""

PROTOCOL = """\
name: checked
seeds: 1
plugins: [my_networks.py]
factors:
  architecture: {architecture}
  head: [plain, {head}]
  dataset: synthetic
  train_per_class: 20
  epochs: 1
  batch_size: 16
control: plain
"""


def bnstudy(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bnstudy", *args],
        cwd=cwd, capture_output=True, text=True, timeout=240,
    )  # fmt: skip


def write(folder: Path, head: str, architecture: str = "mlp") -> None:
    (folder / "my_networks.py").write_text(PLUGIN)
    (folder / "checked.yaml").write_text(PROTOCOL.format(architecture=architecture, head=head))


@pytest.mark.parametrize(
    ("head", "message"),
    [
        ("wide", "RuntimeError: mat1 and mat2 shapes cannot be multiplied (2x256 and 64x10)"),
        ("hard_dropout", "the head applies dropout 0.3 but does not take the option 'dropout'"),
        ("dropout_ignored", "the head applies dropout 0.3 at dropout = 0; build the dropout"),
        ("fixed_momentum", "BatchNorm1d has momentum 0.01 but its rows record bn_momentum"),
    ],
)
def test_a_network_that_would_fail_or_misrecord_is_one_line(tmp_path, head, message):
    write(tmp_path, head)
    checked = bnstudy("validate", "checked.yaml", cwd=tmp_path)
    assert checked.returncode == 2, checked.stdout
    (line,) = checked.stderr.strip().splitlines()
    assert line.startswith(
        f"bnstudy: error: checked.yaml: architecture 'mlp' with head {head!r}, on a batch of 2 "
        "inputs of shape (3, 16, 16) ('synthetic'): "
    ), line
    assert message in line, line


def test_a_head_with_relu_on_feature_maps_passes_and_trains(tmp_path):
    """The dead-unit metrics look for hidden units in 2-D outputs only: a ReLU on 4-D maps
    once failed every trial at evaluation, after training."""
    write(tmp_path, "maps")
    checked = bnstudy("validate", "checked.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    ran = bnstudy(
        "run", "checked.yaml", "--jobs", "1", "--devices", "cpu", "--results", "r.parquet",
        "--no-report", "-q", cwd=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    rows = pq.read_table(tmp_path / "r.parquet").to_pandas().set_index("head")
    assert set(rows["status"]) <= {"ok", "collapsed"}  # evaluated (one epoch may collapse)
    # its flattened maps feed fc: non-negative, so they are the units counted
    assert 0 <= rows.loc["maps", "head_dead_frac"] <= 1


def test_a_declared_dropout_at_the_protocol_s_rate_passes(tmp_path):
    write(tmp_path, "dropout_declared")
    protocol = tmp_path / "checked.yaml"
    protocol.write_text(protocol.read_text().replace("epochs: 1\n", "epochs: 1\n  dropout: 0.3\n"))
    checked = bnstudy("validate", "checked.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr


def test_a_plugin_architecture_s_options_are_set_checked_and_recorded(tmp_path):
    write(tmp_path, "bn", architecture="narrow")

    def ids(section: str) -> list[str]:
        protocol = tmp_path / "checked.yaml"
        protocol.write_text(PROTOCOL.format(architecture="narrow", head="bn") + section)
        plan = bnstudy("plan", "checked.yaml", cwd=tmp_path)
        assert plan.returncode == 0, plan.stderr
        return [line.split()[0] for line in plan.stdout.splitlines() if " block " in line]

    plain = ids("")
    assert ids("architectures: {narrow: {width: 8, depth: 1}}\n") == plain  # the defaults
    wider = ids("architectures: {narrow: {width: 16}}\n")
    assert set(wider).isdisjoint(plain)
    # the builder got every option: the one set, and the other at its declared default
    assert (tmp_path / "built.txt").read_text().splitlines()[-1] == "width=16 depth=1"

    for section, message in [
        ("{narrow: {width: 65}}", "architectures.narrow.width: expected an integer from 1 to 64 "
         "(units per layer); got 65"),
        ("{narrow: {widht: 9}}", "architectures.narrow: unknown option 'widht' (did you mean "
         "'width'?); allowed: width, depth"),
    ]:  # fmt: skip
        (tmp_path / "checked.yaml").write_text(
            PROTOCOL.format(architecture="narrow", head="bn") + f"architectures: {section}\n"
        )
        checked = bnstudy("validate", "checked.yaml", cwd=tmp_path)
        assert checked.returncode == 2 and message in checked.stderr, checked.stderr

    (tmp_path / "checked.yaml").write_text(
        PROTOCOL.format(architecture="narrow", head="bn") + "architectures: {narrow: {width: 16}}\n"
    )
    ran = bnstudy(
        "run", "checked.yaml", "--jobs", "1", "--devices", "cpu", "--results", "r.parquet",
        "--no-report", "-q", cwd=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    table = pq.read_table(tmp_path / "r.parquet")
    assert set(table.column("arch_options").to_pylist()) == {'{"width":16}'}
    recorded = json.loads(table.schema.metadata[b"bnstudy.architecture_options"])
    assert recorded == {"narrow": {"width": [8, 1, 64, "units per layer"], "depth": [1, 1, 4, ""]}}
    # read back where the plugin is gone: the recorded options expand to the same trials
    (tmp_path / "my_networks.py").unlink()
    read_back = subprocess.run(
        [
            sys.executable, "-c",
            "from bnstudy import study; "
            f"print(len(study.load_results({str(tmp_path / 'r.parquet')!r}).results.table))",
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert read_back.returncode == 0, read_back.stderr
    assert read_back.stdout.split() == ["2"]
