"""``synthetic``: a 10-class 3x16x16 image task generated offline, identical on every machine.

The validation images are drawn from the same generator *after* the test images, so the
training pool and test set are bit-identical to those of earlier versions.

Each class has a smooth random prototype. An image is its class prototype, circularly shifted
by up to ``_MAX_SHIFT`` pixels, scaled by a random contrast, plus a smooth class-agnostic
nuisance pattern and pixel noise. The nuisance has the same spatial statistics as the
prototypes, so the classes overlap: small networks land well above chance but well below
100%, and classes with few training images are visibly hurt.
"""

from __future__ import annotations

import functools
import hashlib

import torch
import torch.nn.functional as F

from bnstudy.data.dataset import Dataset

NUM_CLASSES = 10
IMAGE_SHAPE = (3, 16, 16)
TRAIN_PER_CLASS = 1000  # size of the pool a trial subsamples from
TEST_PER_CLASS = 200
VAL_PER_CLASS = 100  # held out for model selection, never the test set
_MAX_SHIFT = 4
_CONTRAST = (0.6, 1.4)
_NUISANCE_AMPLITUDE = 1.25
_NOISE_STD = 1.0


def _smooth(n: int, generator: torch.Generator) -> torch.Tensor:
    """n smooth random patterns (n, 3, 16, 16): coarse 4x4 and 8x8 noise, upsampled, summed."""
    channels, height, width = IMAGE_SHAPE
    coarse = torch.randn(n, channels, 4, 4, generator=generator, dtype=torch.float32)
    medium = torch.randn(n, channels, 8, 8, generator=generator, dtype=torch.float32)
    size = (height, width)
    return F.interpolate(coarse, size=size, mode="bilinear") + 0.5 * F.interpolate(
        medium, size=size, mode="bilinear"
    )


def _sample(
    prototypes: torch.Tensor, per_class: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` noisy images of every class, class-sorted: x (n, 3, 16, 16), y (n,)."""
    y = torch.arange(NUM_CLASSES).repeat_interleave(per_class)
    x = prototypes[y].clone()
    shifts = torch.randint(-_MAX_SHIFT, _MAX_SHIFT + 1, (len(y), 2), generator=generator)
    # One roll per distinct shift (81 of them) instead of one per image.
    for dy in range(-_MAX_SHIFT, _MAX_SHIFT + 1):
        for dx in range(-_MAX_SHIFT, _MAX_SHIFT + 1):
            rows = torch.nonzero((shifts[:, 0] == dy) & (shifts[:, 1] == dx)).flatten()
            x[rows] = torch.roll(x[rows], shifts=(dy, dx), dims=(2, 3))
    low, high = _CONTRAST
    # float32 whatever the default dtype: the pool is cached, and every trial must see one pool.
    contrast = low + (high - low) * torch.rand(
        len(y), 1, 1, 1, generator=generator, dtype=torch.float32
    )
    nuisance = _NUISANCE_AMPLITUDE * _smooth(len(y), generator)
    noise = _NOISE_STD * torch.randn(x.shape, generator=generator, dtype=torch.float32)
    return contrast * x + nuisance + noise, y


@functools.lru_cache(maxsize=2)
def synthetic_pool(task: int = 0) -> Dataset:
    """The full balanced pool: 1000 train, 100 val and 200 test images per class, standardized.

    Seeded from the dataset name, never from a trial seed, so every trial and every process
    sees the same images; cached per process. ``task`` > 0 draws other class prototypes (and
    images): another task of the same kind and shape, e.g. for pre-training a body that is
    then fine-tuned on task 0. Task 0 is the original pool, bit for bit.
    """
    name = "synthetic" if task == 0 else f"synthetic/task{task}"
    seed = int(hashlib.sha256(name.encode()).hexdigest()[:15], 16)
    generator = torch.Generator().manual_seed(seed)
    prototypes = _smooth(NUM_CLASSES, generator)
    x_train, y_train = _sample(prototypes, TRAIN_PER_CLASS, generator)
    x_test, y_test = _sample(prototypes, TEST_PER_CLASS, generator)
    x_val, y_val = _sample(prototypes, VAL_PER_CLASS, generator)
    # Per-channel standardization with training-pool statistics.
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    std = x_train.std(dim=(0, 2, 3), keepdim=True)
    return Dataset(
        x_train=(x_train - mean) / std,
        y_train=y_train,
        x_test=(x_test - mean) / std,
        y_test=y_test,
        num_classes=NUM_CLASSES,
        input_shape=IMAGE_SHAPE,
        class_counts=[TRAIN_PER_CLASS] * NUM_CLASSES,
        x_val=(x_val - mean) / std,
        y_val=y_val,
    )
