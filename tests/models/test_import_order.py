"""Whichever models module a process imports first, every network builds.

A plugin may start with ``from bnstudy.models.resnet import ResNetBody``; a worker may import
``bnstudy.models.heads`` before anything else. Each case runs in a fresh interpreter, since
the registries are per process.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

FIRST = [
    "cnn",
    "cnn1d",
    "cnn_flatten",
    "mlp",
    "mnist1d_paper",
    "resnet",
    "preact_resnet",
    "vgg",
    "heads",
]

BUILD_ALL = """
import bnstudy.models.{module}
from bnstudy.models import architecture_names, build_model, head_names
for arch in architecture_names():
    shape = (1, 40) if arch in ("cnn1d", "mnist1d_cnn") else (3, 16, 16)
    for head in head_names():
        model = build_model(arch, head, shape, 10, init_seed=lambda name: 0)
        assert model.head.fc.out_features == 10, (arch, head)
"""


@pytest.mark.parametrize("module", FIRST)
def test_every_network_builds_whichever_module_is_imported_first(module):
    code = BUILD_ALL.format(module=module)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
