"""Seed packing of the deep networks: ``resnet20``/``resnet32``, ``preact_resnet20``,
``vgg11``/``vgg11_bn`` (residual sums, option-A shortcuts, eleven-conv stacks).

Two levels, as for the small networks (``test_packing_models.py``, ``test_packing.py``):

- **the packed module**: each of the five bodies, packed from K = 3 models with different
  weights, gives each copy's logits, gradients and BN running statistics of its own model,
  in train and eval mode (float64, 8x8 inputs, batches of 8; measured: 0 for logits, 4e-17
  to 6e-14 for gradients);
- **the packed trial**: a pack of 3 seeds equals three ``run_trial`` calls in float64 to
  1e-10 (curves, every metric and per-class list, every parameter and BN buffer of each
  copy), with ``test_packing.compare``, one test per body family. ``resnet20`` stands for
  ``resnet32`` (one ``ResNetBody``: the same blocks and shortcuts, 3 rather than 5 blocks a
  stage) and ``vgg11_bn`` for ``vgg11`` (one ``VGGBody``, without BN and with conv biases,
  whose packed module is checked above). To keep each at a few seconds on one CPU thread the
  trials take 6 steps of 8 images, and the data (the float64 fixture's, then
  :func:`shrunk`) are 8x8 and a tenth of its test and validation splits; both paths see the
  same data, so what is compared is the code. Measured: 1e-16 to 1e-13. (With batches of 4,
  ``vgg11_bn``'s BNs over 1x1 maps normalize 4 values each and amplify float64 rounding
  about a hundredfold a step: 2e-16 after 2 steps, 2e-10 after 6. So does the BN head on
  ``vgg11``'s small unnormalized features: 4e-16 after 1 step, 3e-14 after 3, 4e-8 after 6;
  the same pack with head ``plain``: 2e-16 after 6.)
"""

import dataclasses

import pytest
import torch

import test_packing_models as packing_models
from bnstudy.execution import runner
from bnstudy.execution.tasks import choose_packing
from bnstudy.models import head_names
from bnstudy.models.packed import copy_view, pack_inputs, pack_models
from bnstudy.spec.trial import Trial
from bnstudy.training import loop, packing, train
from bnstudy.training.packable import PACKABLE_ARCHITECTURES
from test_packing import compare, trained  # noqa: F401 (trained: a fixture)

#: The deep bodies and the input shape their packed modules are checked on here.
SHAPES = {
    arch: (3, 8, 8) for arch in ("resnet20", "resnet32", "preact_resnet20", "vgg11", "vgg11_bn")
}
K = 3
TOLERANCE = 1e-10
#: The CPU always; CUDA where there is one (grouped convolutions there are cuDNN's).
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))]  # fmt: skip


def models_for(architecture: str, head: str = "bn", device: str = "cpu") -> list[torch.nn.Module]:
    """K models of one deep architecture and head, with different weights (seeds)."""
    return packing_models.models_for(architecture, head, device, shapes=SHAPES, k=K)


def test_the_deep_bodies_are_packable():
    assert set(SHAPES) <= set(PACKABLE_ARCHITECTURES)


# -- the packed module ------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("architecture", list(SHAPES))
def test_packed_deep_body_equals_k_separate_models(float64, architecture, device):
    packing_models.assert_packed_equals_separate(
        models_for(architecture, device=device), SHAPES[architecture], device
    )


@pytest.mark.parametrize("architecture", ["resnet20", "preact_resnet20"])
def test_a_nan_copy_stays_in_its_own_residual_stream(architecture):
    """NaN weights and infinite inputs in copy 1 reach neither the logits nor the gradients of
    copies 0 and 2 through the residual sums and the zero-padding shortcuts."""
    clean = pack_models(models_for(architecture))
    poisoned = pack_models(models_for(architecture))
    with torch.no_grad():
        for parameter in poisoned.parameters():
            copy_view(parameter, K, 1).fill_(float("nan"))
    x = torch.randn(8, K, *SHAPES[architecture])
    x_poisoned = x.clone()
    x_poisoned[:, 1] = float("inf")
    logits = []
    for model, inputs in ((clean, x), (poisoned, x_poisoned)):
        logits.append(model(pack_inputs(inputs)).view(8, K, 10))
        logits[-1].sum().backward()
    assert logits[1][:, 1].isnan().all()
    assert torch.equal(logits[0][:, [0, 2]], logits[1][:, [0, 2]])
    named = zip(clean.named_parameters(), poisoned.named_parameters(), strict=True)
    for (name, a), (_, b) in named:
        for k in (0, 2):
            assert torch.equal(copy_view(a.grad, K, k), copy_view(b.grad, K, k)), name


# -- the packed trial -------------------------------------------------------------------


def shrunk(build):
    """The float64 fixture's dataset builder, then 8x8 images (every other pixel) and a tenth
    of the (already thinned) test and validation splits: an 11-conv VGG trial in seconds."""

    def build_shrunk(trial, options=None):
        data = build(trial, options)
        x_train = data.x_train[..., ::2, ::2].contiguous()
        return dataclasses.replace(
            data,
            x_train=x_train,
            x_test=data.x_test[::10, :, ::2, ::2].contiguous(),
            y_test=data.y_test[::10].clone(),
            x_val=data.x_val[::10, :, ::2, ::2].contiguous(),
            y_val=data.y_val[::10].clone(),
            input_shape=tuple(x_train.shape[1:]),
        )

    return build_shrunk


@pytest.fixture
def tiny(float64, monkeypatch):
    """The float64 fixture on shrunk data, curve points every 2 steps."""
    monkeypatch.setattr(train, "build_dataset", shrunk(train.build_dataset))
    monkeypatch.setattr(packing, "build_dataset", shrunk(packing.build_dataset))
    monkeypatch.setattr(loop, "CURVE_EVERY_STEPS", 2)  # trials and packs alike read it there


def three_seeds(**settings) -> list[Trial]:
    base = dict(
        dataset="synthetic", imbalance_ratio=2.0, train_per_class=6, epochs=0, steps=6,
        batch_size=8, lr=0.05, optimizer="sgd", weight_decay=5e-4,
    )  # fmt: skip
    return [Trial(seed=s, **{**base, **settings}) for s in range(K)]


@pytest.mark.parametrize(
    "architecture, head",
    [("resnet20", "bn"), ("preact_resnet20", "hidden_relu_bn"), ("vgg11_bn", "plain")],
)
def test_pack_of_three_equals_three_trials_in_float64(tiny, trained, architecture, head):  # noqa: F811
    statuses = compare(three_seeds(architecture=architecture, head=head), trained, TOLERANCE)
    assert set(statuses) <= {"ok", "collapsed"}  # evaluated: every metric compared


# -- the runner packs them ----------------------------------------------------------------


def test_the_runner_packs_the_deep_networks_with_every_head():
    """Asked to pack (``--pack auto`` on a GPU, or a number), the runner groups each deep
    network's seeds into one pack, without a note; ``--pack auto`` on the CPU still does not
    pack."""
    trials = [
        t
        for arch in SHAPES
        for head in head_names()
        for t in three_seeds(architecture=arch, head=head)
    ]
    execution = runner.plan_execution(devices="cpu", pack=16)
    notes: list[str] = []
    pack_fn, packable = choose_packing(execution, runner.run_trial, None, trials, notes)
    assert pack_fn is packing.run_pack and notes == []
    tasks = runner.make_tasks(trials, execution.pack, packable)
    assert [len(task) for task in tasks] == [K] * (len(trials) // K)
    assert runner.plan_execution(devices="cpu", pack="auto").pack == 1
