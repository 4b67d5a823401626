"""The feature network of `classifier-<dataset>` FID: a small conv classifier trained on the
dataset's labels; FID and KID read its penultimate layer."""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """Stride-2 conv blocks (BatchNorm, ReLU) -> dense `hidden` (the features) -> logits."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int,
                 channels: list[int], hidden: int):
        super().__init__()
        self.input_shape, self.num_classes = tuple(input_shape), num_classes
        self.num_features = hidden  # what torchmetrics reads instead of probing
        c, h, w = input_shape
        layers, prev = [], c
        for ch in channels:
            layers += [nn.Conv2d(prev, ch, 3, stride=2, padding=1), nn.BatchNorm2d(ch),
                       nn.ReLU()]
            prev = ch
            h, w = (h + 1) // 2, (w + 1) // 2
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(prev * h * w, hidden),
                                  nn.ReLU())
        self.head = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
