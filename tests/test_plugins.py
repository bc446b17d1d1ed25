"""A protocol's own networks (``plugins:``): known to validation, built in every worker.

Each test runs ``bnstudy`` in a fresh process, so the networks a plugin registers never leak
into this test session's registries.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

PLUGIN = """\
import torch
from torch import nn

from bnstudy.models import register_architecture, register_head


class Tiny(nn.Module):
    def __init__(self, input_shape):
        super().__init__()
        self.out_features = 16
        features = int(torch.tensor(input_shape).prod())
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(features, 16), nn.ReLU())

    def forward(self, x):
        return self.net(x)


@register_architecture(
    "plugin_tiny", inputs=("any",), ends_in_norm=False, pooling="none", tail="linear -> ReLU"
)
def plugin_tiny(input_shape):
    return Tiny(input_shape)


class ScaledHead(nn.Module):
    def __init__(self, d, num_classes, *, dropout=0.0):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(d, num_classes)

    def forward(self, x):
        return 2 * self.fc(self.drop(x))


register_head("plugin_scaled", options=("dropout",))(ScaledHead)
"""

PROTOCOL = """\
name: plugged
seeds: 2
plugins: [{plugin}]
factors:
  architecture: plugin_tiny
  head: [plain, plugin_scaled]
  dataset: synthetic
  train_per_class: 20
  epochs: 1
  batch_size: 32
control: plain
"""


READ_BACK = (
    "print(len(study.load_results({path!r}).results.table), "
    "'plugin_scaled' in study.known_names()['head'])"
)


def bnstudy(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bnstudy", *args], cwd=cwd, capture_output=True, text=True
    )


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """A protocol in ``study/`` whose plugin file sits beside it."""
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "my_networks.py").write_text(PLUGIN)
    (folder / "plugged.yaml").write_text(PROTOCOL.format(plugin="my_networks.py"))
    return folder


def test_a_plugins_networks_train_in_worker_processes_and_its_code_is_recorded(study: Path):
    protocol = study / "plugged.yaml"  # a head option away from its default, on both heads
    protocol.write_text(
        protocol.read_text().replace("  epochs: 1\n", "  epochs: 1\n  dropout: 0.5\n")
    )
    # run from another folder: the plugin file is found beside the protocol, by workers too
    results = study.parent / "r.parquet"
    done = bnstudy(
        "run", "study/plugged.yaml", "--jobs", "2", "--threads", "1", "--devices", "cpu",
        "--results", str(results), "--no-report", "-q", cwd=study.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    table = pq.read_table(results)
    rows = table.to_pandas()
    assert len(rows) == 4 and set(rows["status"]) == {"ok"}, rows[["status", "error"]]
    assert set(rows["architecture"]) == {"plugin_tiny"}
    assert set(rows["head"]) == {"plain", "plugin_scaled"}
    recorded = json.loads(table.schema.metadata[b"bnstudy.plugins"])
    (entry, digest), *_ = recorded.items()
    assert entry.endswith("my_networks.py") and Path(entry).is_absolute()
    assert digest == hashlib.sha256((study / "my_networks.py").read_bytes()).hexdigest()
    # read back where the plugin is not installed: the recorded head options still make
    # the protocol expand to the trials that made the rows
    (study / "my_networks.py").unlink()
    read_back = subprocess.run(
        [sys.executable, "-c", f"from bnstudy import study; {READ_BACK.format(path=str(results))}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    # ... and the head stays unknown to new protocols there: it has no builder
    assert read_back.stdout.split() == ["4", "False"]


def test_a_plugins_head_options_are_factors(study: Path):
    protocol = study / "plugged.yaml"
    text = protocol.read_text().replace("  epochs: 1\n", "  epochs: 1\n  dropout: [0.0, 0.5]\n")
    protocol.write_text(text)
    plan = bnstudy("plan", "plugged.yaml", cwd=study)
    assert plan.returncode == 0, plan.stderr
    # plain takes dropout too, so both arms at both rates: 2 seeds x 2 heads x 2 rates
    assert "8 trials" in plan.stdout, plan.stdout


def test_without_its_plugin_a_network_is_an_unknown_name(study: Path):
    protocol = study / "plugged.yaml"
    protocol.write_text(protocol.read_text().replace("plugins: [my_networks.py]\n", ""))
    checked = bnstudy("validate", "plugged.yaml", cwd=study)
    assert checked.returncode == 2
    assert "unknown name 'plugin_tiny'" in checked.stderr and "Traceback" not in checked.stderr


@pytest.mark.parametrize(
    ("plugin", "code", "message"),
    [
        ("missing.py", None, "plugins: .*missing.py: no such file"),
        ("broken.py", "raise RuntimeError('half done')", "broken.py: RuntimeError: half done"),
        ("no_such.module", None, "cannot import 'no_such.module': ModuleNotFoundError"),
    ],
)
def test_a_plugin_that_cannot_be_imported_is_one_line(study: Path, plugin, code, message):
    if code is not None:
        (study / plugin).write_text(code)
    (study / "plugged.yaml").write_text(PROTOCOL.format(plugin=plugin))
    checked = bnstudy("validate", "plugged.yaml", cwd=study)
    assert checked.returncode == 2
    lines = checked.stderr.strip().splitlines()
    assert len(lines) == 1 and "plugged.yaml: plugins: " in lines[0], checked.stderr
    assert re.search(message, lines[0]), lines[0]


def test_plugin_files_stay_found_after_the_working_folder_changes(study: Path, monkeypatch):
    from bnstudy.spec.loading import load_protocol, plugins_of

    monkeypatch.chdir(study.parent)
    protocol = load_protocol("study/plugged.yaml")  # a relative path, read from here
    monkeypatch.chdir(study)  # e.g. a notebook that moves on
    expected = str(study / "my_networks.py")
    assert protocol.plugin_entries() == plugins_of(study / "plugged.yaml") == (expected,)


def test_unreadable_recorded_head_options_name_the_results_file(tmp_path: Path):
    from bnstudy import study as verbs
    from bnstudy.store import StoreError

    source = pq.read_table(Path(__file__).parents[1] / "data/results/study_claim5.parquet")
    metadata = dict(source.schema.metadata) | {b"bnstudy.head_options": b"{not json"}
    path = tmp_path / "broken.parquet"
    pq.write_table(source.replace_schema_metadata(metadata), path)
    with pytest.raises(StoreError, match=r"broken\.parquet: unreadable head options"):
        verbs.load_results(path)


def test_a_plugin_is_imported_once_hashed_as_imported_and_fails_with_its_first_error(
    tmp_path: Path,
):
    from bnstudy.spec import plugins

    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    good.write_text("VALUE = 1\n")
    bad.write_text("raise KeyError('first')\n")
    [module] = plugins.load([str(good)])
    digest = hashlib.sha256(good.read_bytes()).hexdigest()
    good.write_text("VALUE = 2\n")  # edited while the process runs: not re-imported
    assert plugins.load([str(good)]) == [module] and module.VALUE == 1
    assert plugins.fingerprints([str(good)]) == {str(good): digest}  # what ran, not the edit
    with pytest.raises(plugins.PluginError, match="KeyError: 'first'") as first:
        plugins.load([str(bad)])
    bad.write_text("raise ValueError('second')\n")
    with pytest.raises(plugins.PluginError) as again:
        plugins.load([str(bad)])
    assert again.value is first.value
