"""The networks of the three papers, with width and depth as parameters."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class MLP(nn.Sequential):
    """Fully connected ReLU network: ``in_features -> width x depth -> num_classes``.

    Humayun et al.'s MNIST MLP is ``MLP(784, width=200, depth=4)``. Inputs of any
    shape are flattened first. Layers are named ``flatten``, ``fc0``, ``relu0``, ...,
    ``out``.
    """

    def __init__(self, in_features: int = 784, width: int = 200, depth: int = 2, num_classes: int = 10) -> None:
        if depth < 1 or width < 1:
            raise ValueError(f"MLP needs depth >= 1 and width >= 1, got depth={depth}, width={width}")
        layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
        for i in range(depth):
            layers += [(f"fc{i}", nn.Linear(in_features if i == 0 else width, width)), (f"relu{i}", nn.ReLU())]
        layers.append(("out", nn.Linear(width, num_classes)))
        super().__init__(OrderedDict(layers))


class AnsuiniCNN(nn.Sequential):
    """The small CNN of Ansuini et al.: conv32-pool-conv64-pool-fc128-fc10.

    5x5 convolutions (padding 2) with ReLU, 2x2 max-pooling. ``width`` scales the
    channel and unit counts (1.0 gives 32, 64, 128).
    """

    def __init__(self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10, width: float = 1.0) -> None:
        c1, c2, f = (max(1, round(width * c)) for c in (32, 64, 128))
        side = image_size // 4
        super().__init__(
            OrderedDict(
                conv1=nn.Conv2d(in_channels, c1, 5, padding=2),
                relu1=nn.ReLU(),
                pool1=nn.MaxPool2d(2),
                conv2=nn.Conv2d(c1, c2, 5, padding=2),
                relu2=nn.ReLU(),
                pool2=nn.MaxPool2d(2),
                flatten=nn.Flatten(),
                fc1=nn.Linear(c2 * side * side, f),
                relu3=nn.ReLU(),
                fc2=nn.Linear(f, num_classes),
            )
        )


class VGG(nn.Module):
    """A VGG-style network for small images: ``depth`` stages of 3x3 conv-(BN)-ReLU (two per stage, or as
    ``convs`` says) and a max-pool, then global average pooling (``pool``, the representation Tan et al. measure)
    and a linear classifier.

    Channels double at each stage from ``width``, up to ``max_channels``. The CIFAR VGG-16 (with BatchNorm) is
    ``VGG(width=64, depth=5, convs=(2, 2, 3, 3, 3), max_channels=512)``: 13 convolutions of 64-512 channels.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        width: int = 32,
        depth: int = 3,
        batch_norm: bool = True,
        convs: tuple[int, ...] | None = None,
        max_channels: int | None = None,
    ) -> None:
        super().__init__()
        convs = (2,) * depth if convs is None else tuple(convs)
        if len(convs) != depth or min(convs) < 1:
            raise ValueError(f"convs must give at least one convolution for each of the {depth} stages, got {convs}")
        layers: list[nn.Module] = []
        c_in = in_channels
        for stage in range(depth):
            c_out = width * 2**stage if max_channels is None else min(width * 2**stage, max_channels)
            for _ in range(convs[stage]):
                norm = [nn.BatchNorm2d(c_out)] if batch_norm else []
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1), *norm, nn.ReLU()]
                c_in = c_out
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c_in, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a skip connection; pre-activation when ``preact``."""

    def __init__(self, c_in: int, c_out: int, stride: int, batch_norm: bool, preact: bool) -> None:
        super().__init__()
        norm = (lambda c: nn.BatchNorm2d(c)) if batch_norm else (lambda c: nn.Identity())
        self.preact = preact
        self.bn1 = norm(c_in if preact else c_out)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=not batch_norm)
        self.relu1 = nn.ReLU()
        self.bn2 = norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=not batch_norm)
        self.relu2 = nn.ReLU()
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=not batch_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preact:  # He et al. 2016b: BN-ReLU before each convolution, nothing after the sum
            out = self.relu1(self.bn1(x))
            skip = self.shortcut(out) if not isinstance(self.shortcut, nn.Identity) else x
            out = self.conv2(self.relu2(self.bn2(self.conv1(out))))
            return out + skip
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet-18-style network for 32x32 inputs: a 3x3 stem, four stages of ``blocks`` basic blocks.

    ``ResNet(width=64)`` is the usual CIFAR ResNet-18; Humayun et al. use
    ``ResNet(width=16, batch_norm=False, preact=True)``. Every ReLU is its own
    module, so probes can address each one.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        width: int = 64,
        blocks: tuple[int, ...] = (2, 2, 2, 2),
        batch_norm: bool = True,
        preact: bool = False,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=not batch_norm)
        self.bn1 = nn.BatchNorm2d(width) if batch_norm and not preact else nn.Identity()
        self.relu = nn.ReLU() if not preact else nn.Identity()
        stages = []
        c_in = width
        for i, n_blocks in enumerate(blocks):
            c_out = width * 2**i
            stages.append(
                nn.Sequential(
                    *[
                        BasicBlock(c_in if j == 0 else c_out, c_out, 2 if (i > 0 and j == 0) else 1, batch_norm, preact)
                        for j in range(n_blocks)
                    ]
                )
            )
            c_in = c_out
        self.layer1, self.layer2, self.layer3, self.layer4 = (stages + [nn.Identity()] * 4)[:4]
        self.final = (
            nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU())
            if preact and batch_norm
            else (nn.ReLU() if preact else nn.Identity())
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.pool(self.final(x))))
