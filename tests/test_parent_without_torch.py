"""The parent process never imports torch: it validates, schedules and stores; workers train.

Importing torch costs about a second, on every ``validate``, ``plan`` and ``status``, and on
every run with worker processes, where it buys nothing. (The first command that needs a
generated dataset builds its cached pool, with torch; the fixture does that first.)
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from bnstudy.execution.devices import cpu_model

PROTOCOL = """\
name: torchless
seeds: 2
factors:
  architecture: mlp
  head: [plain, bn]
  dataset: synthetic
  train_per_class: 20
  epochs: 1
  batch_size: 32
control: plain
"""


def run_without_torch(code: str, cwd: Path) -> None:
    """Run ``code`` in a fresh interpreter, then fail if it imported torch."""
    check = "\nimport sys\nassert 'torch' not in sys.modules, 'the parent imported torch'\n"
    subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code) + check], cwd=cwd, check=True, timeout=300
    )


@pytest.fixture
def study_dir(tmp_path: Path) -> Path:
    """A folder with the protocol, its dataset pool already cached (where the session's
    ``BNSTUDY_DATA_DIR`` says)."""
    (tmp_path / "p.yaml").write_text(PROTOCOL)
    subprocess.run(
        [sys.executable, "-m", "bnstudy", "validate", "p.yaml"], cwd=tmp_path, check=True
    )
    return tmp_path


def test_validate_plan_and_status_do_not_import_torch(study_dir: Path):
    run_without_torch(
        """
        from bnstudy import cli
        for verb in ("validate", "plan", "status"):
            assert cli.main([verb, "p.yaml"]) == 0, verb
        """,
        study_dir,
    )


def test_a_run_with_workers_trains_in_them_and_not_in_the_parent(study_dir: Path):
    run_without_torch(
        """
        from bnstudy import study
        from bnstudy.execution.runner import run_protocol
        protocol = study.load("p.yaml")
        summary = run_protocol(protocol, "r.parquet", jobs=2, devices="auto", threads=1)
        assert summary.ran == 4 and summary.failed == 0, summary.describe()
        """,
        study_dir,
    )
    table = pd.read_parquet(study_dir / "r.parquet")
    assert len(table) == 4 and set(table["status"]) == {"ok"}
    # each row says which machine trained it (here the workers share the parent's)
    assert set(table["host"]) == {socket.gethostname()}
    assert set(table["cpu_model"]) == {cpu_model()}


def test_the_models_package_names_networks_without_torch_and_builds_them_with_it():
    run_without_torch(
        """
        from bnstudy import models
        assert "cnn" in models.architecture_names() and "bn" in models.head_names()
        assert models.architecture_info("resnet20").ends_in_norm
        models.check_architecture_input("cnn", (3, 16, 16))
        """,
        Path.cwd(),
    )
    from bnstudy.models import architecture_info, architecture_names, build_model

    for name in architecture_names():  # every declared network has a builder behind it
        shape = (1, 40) if architecture_info(name).inputs == ("signal",) else (3, 16, 16)
        model = build_model(name, "bn", shape, 10, init_seed=lambda module: 0)
        assert model.head.fc.out_features == 10


def test_devices_auto_asks_torch_only_where_a_gpu_driver_is_loaded(monkeypatch):
    import torch

    from bnstudy.execution import devices

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    loaded: set[str] = set()
    monkeypatch.setattr(devices.os.path, "exists", lambda path: path in loaded)
    assert devices.visible_gpus() == []  # no driver: torch (which would say 2) not asked
    for path in ("/proc/driver/nvidia/version", "/sys/module/amdgpu", "/dev/dxg"):
        loaded = {path}
        assert devices.visible_gpus() == ["cuda:0", "cuda:1"], path
