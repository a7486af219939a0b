"""The demo zoo's PyTorch classes (`model: engine_factory.demo.models:TinyCNN` in config/config.yaml).

A package of their own: a model's code fingerprint covers the package that holds its class
(engine_factory/modelcode.py),
so editing the rest of the workflow does not rebuild the demo models.
"""

import torch
from torch import nn


class TinyCNN(nn.Module):
    """conv-bn-relu x2, global pooling, linear: a 10-class image classifier on [batch, 3, 32, 32]."""

    def __init__(self, num_classes: int = 10, width: int = 32):  # ModelOpt skips fp8 for <= 16 channels
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


class TwoTower(nn.Module):
    """Two inputs (an image and a feature vector), two outputs (class logits and an embedding)."""

    def __init__(self, num_classes: int = 5, embed: int = 16):
        super().__init__()
        self.image = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feats = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
        self.embed = nn.Linear(24, embed)
        self.classify = nn.Linear(embed, num_classes)

    def forward(self, image, features):
        e = self.embed(torch.cat([self.image(image), self.feats(features)], dim=1))
        return self.classify(torch.relu(e)), e


class TinyMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))

    def forward(self, features):
        return self.net(features)
