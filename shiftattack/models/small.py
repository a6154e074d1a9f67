"""Small CIFAR-size CNNs for tests, benchmarks and the CPU tier of the experiments."""

from __future__ import annotations

from torch import Tensor, nn

from shiftattack.models._registry import register_model

__all__ = ["SmallCNN", "small_cnn"]


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU-maxpool stages, global average pooling, a linear head.

    Args:
        num_classes: number of output logits.
        width: channels of the first stage (doubled at each stage).
        in_channels: input channels.

    Shape:
        input (N, in_channels, H, W) floats (H, W >= 8) -> logits (N, num_classes).
    """

    def __init__(self, num_classes: int = 10, width: int = 32, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for i in range(3):
            c_out = width * 2**i
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


@register_model
def small_cnn(num_classes: int = 10, width: int = 32, **kwargs) -> nn.Module:
    """SmallCNN (about 0.29 M parameters at width 32); inputs in [0, 1]."""
    return SmallCNN(num_classes=num_classes, width=width, **kwargs)
