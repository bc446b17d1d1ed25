"""Two CNN bodies that differ only in their normalisation: BatchNorm or LayerNorm.

A plugin of ``body_norm.yaml`` (the "Ask your own question" page of the README). One builder,
registered twice with ``functools.partial``, so the two architectures are the same network
but for the norm layer: the treatment ``architecture`` then compares exactly that. LayerNorm
over a feature map is ``GroupNorm`` with one group (it normalises each sample over channels,
height and width, with a per-channel affine), the usual choice for conv maps.
"""

from functools import partial

from torch import nn

from bnstudy.models import register_architecture


def convnet(input_shape, *, width, norm):
    """Three 3x3 conv blocks (conv -> norm -> ReLU), then global average pooling."""

    def norm_layer(channels):
        return nn.BatchNorm2d(channels) if norm == "batch" else nn.GroupNorm(1, channels)

    layers, channels = [], input_shape[0]
    for _ in range(3):
        layers += [nn.Conv2d(channels, width, 3, padding=1), norm_layer(width), nn.ReLU()]
        channels = width
    body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    body.out_features = width
    return body


for _norm, _label in (("batch", "BN"), ("layer", "LayerNorm")):
    register_architecture(
        f"convnet_{_norm}",
        inputs=("image",),
        ends_in_norm=True,
        pooling="global_avg",
        tail=f"conv -> {_label} -> ReLU -> GAP",
        options={"width": (32, 4, 512, "channels per conv layer")},
    )(partial(convnet, norm=_norm))
