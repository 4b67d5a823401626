"""InceptionV3 as FID uses it (the TensorFlow graph of 2015-12-05 ported to PyTorch): the pool
features (2048) of images in [0, 1]. The weights come only from a local file, the one
pytorch-fid (`pt_inception-2015-12-05-6726825d.pth`) or torch-fidelity
(`weights-inception-2015-12-05-6726825d.pth`) use: both carry these parameter names.
Written here because torchvision's build for this torch does not load; the blocks differ
from torchvision's where TensorFlow's do (average pools ignore padded zeros; the last
block max-pools)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from latentatlas.errors import UserError

SIZE = 299
FEATURES = 2048
# pytorch-fid's resize (F.interpolate, bilinear, no antialiasing): statistics published by
# pytorch-fid are comparable with ours; clean-fid's (PIL bicubic, antialiased) are not.
RESIZE_MODE = "bilinear"
ANTIALIAS = False
RESIZE = f"{RESIZE_MODE} to {SIZE}x{SIZE} (torch interpolate, align_corners=False)"


class BasicConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, **conv):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **conv)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def conv(cin: int, cout: int, k, s: int = 1, p=0) -> BasicConv2d:
    return BasicConv2d(cin, cout, kernel_size=k, stride=s, padding=p)


def tf_avg_pool(x):
    """TensorFlow's 3x3 average pool: padded zeros do not count."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool: int):
        super().__init__()
        self.branch1x1 = conv(cin, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = conv(cin, 48, 1), conv(48, 64, 5, p=2)
        self.branch3x3dbl_1 = conv(cin, 64, 1)
        self.branch3x3dbl_2 = conv(64, 96, 3, p=1)
        self.branch3x3dbl_3 = conv(96, 96, 3, p=1)
        self.branch_pool = conv(cin, pool, 1)

    def forward(self, x):
        return torch.cat([
            self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(tf_avg_pool(x))], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = conv(cin, 384, 3, s=2)
        self.branch3x3dbl_1 = conv(cin, 64, 1)
        self.branch3x3dbl_2 = conv(64, 96, 3, p=1)
        self.branch3x3dbl_3 = conv(96, 96, 3, s=2)

    def forward(self, x):
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int):
        super().__init__()
        row, col = ((1, 7), (0, 3)), ((7, 1), (3, 0))  # (kernel, padding)
        self.branch1x1 = conv(cin, 192, 1)
        self.branch7x7_1 = conv(cin, c7, 1)
        self.branch7x7_2 = conv(c7, c7, row[0], p=row[1])
        self.branch7x7_3 = conv(c7, 192, col[0], p=col[1])
        self.branch7x7dbl_1 = conv(cin, c7, 1)
        self.branch7x7dbl_2 = conv(c7, c7, col[0], p=col[1])
        self.branch7x7dbl_3 = conv(c7, c7, row[0], p=row[1])
        self.branch7x7dbl_4 = conv(c7, c7, col[0], p=col[1])
        self.branch7x7dbl_5 = conv(c7, 192, row[0], p=row[1])
        self.branch_pool = conv(cin, 192, 1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d7 = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                      self.branch7x7dbl_4, self.branch7x7dbl_5):
            d7 = layer(d7)
        return torch.cat([self.branch1x1(x), b7, d7, self.branch_pool(tf_avg_pool(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1, self.branch3x3_2 = conv(cin, 192, 1), conv(192, 320, 3, s=2)
        self.branch7x7x3_1 = conv(cin, 192, 1)
        self.branch7x7x3_2 = conv(192, 192, (1, 7), p=(0, 3))
        self.branch7x7x3_3 = conv(192, 192, (7, 1), p=(3, 0))
        self.branch7x7x3_4 = conv(192, 192, 3, s=2)

    def forward(self, x):
        b7 = x
        for layer in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3,
                      self.branch7x7x3_4):
            b7 = layer(b7)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7,
                          F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """`max_pool`: the last block (Mixed_7c) max-pools its pool branch in TensorFlow's graph."""

    def __init__(self, cin: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = conv(cin, 320, 1)
        self.branch3x3_1 = conv(cin, 384, 1)
        self.branch3x3_2a = conv(384, 384, (1, 3), p=(0, 1))
        self.branch3x3_2b = conv(384, 384, (3, 1), p=(1, 0))
        self.branch3x3dbl_1 = conv(cin, 448, 1)
        self.branch3x3dbl_2 = conv(448, 384, 3, p=1)
        self.branch3x3dbl_3a = conv(384, 384, (1, 3), p=(0, 1))
        self.branch3x3dbl_3b = conv(384, 384, (3, 1), p=(1, 0))
        self.branch_pool = conv(cin, 192, 1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        d3 = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else tf_avg_pool(x)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(b3), self.branch3x3_2b(b3),
                          self.branch3x3dbl_3a(d3), self.branch3x3dbl_3b(d3),
                          self.branch_pool(pooled)], 1)


class FIDInception(nn.Module):
    """forward: images (N, C, H, W) in [0, 1] (1 channel is repeated to 3) -> (N, 2048)."""

    num_features = FEATURES

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = conv(3, 32, 3, s=2)
        self.Conv2d_2a_3x3 = conv(32, 32, 3)
        self.Conv2d_2b_3x3 = conv(32, 64, 3, p=1)
        self.Conv2d_3b_1x1 = conv(64, 80, 1)
        self.Conv2d_4a_3x3 = conv(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c = InceptionA(192, 32), InceptionA(256, 64)
        self.Mixed_5d, self.Mixed_6a = InceptionA(288, 64), InceptionB(288)
        self.Mixed_6b, self.Mixed_6c = InceptionC(768, 128), InceptionC(768, 160)
        self.Mixed_6d, self.Mixed_6e = InceptionC(768, 160), InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b, self.Mixed_7c = InceptionE(1280, False), InceptionE(2048, True)
        self.fc = nn.Linear(FEATURES, 1008)  # in the weights file; FID does not use it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(SIZE, SIZE), mode=RESIZE_MODE, align_corners=False,
                          antialias=ANTIALIAS)
        x = 2 * x - 1  # the graph's input range
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a,
                      self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e,
                      self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return x.mean(dim=(2, 3))


def read_inception_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in a pytorch-fid / torch-fidelity weights file, checked against the
    network; one line naming the file and the first mismatch otherwise."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"--inception-weights {path}: file not found (LatentAtlas never "
                        "downloads it)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, truncated files, ...
        raise UserError(f"--inception-weights {path}: not a PyTorch state dict "
                        f"({str(e).splitlines()[0][:120]})") from None
    expected = FIDInception().state_dict()
    if not isinstance(state, dict):
        raise UserError(f"--inception-weights {path}: not a state dict")
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise UserError(f"--inception-weights {path}: not FID InceptionV3 weights (no "
                        f"{missing[0]!r}, {len(missing)} keys missing)")
    for k, v in expected.items():
        if k in state and tuple(state[k].shape) != tuple(v.shape):
            raise UserError(f"--inception-weights {path}: {k} has shape "
                            f"{tuple(state[k].shape)}, expected {tuple(v.shape)}")
    # BatchNorm's step counters are absent from some files and do not act in eval: left out,
    # so the same weights give the same state (and digest) from either file
    return {k: state[k] for k in expected if not k.endswith("num_batches_tracked")}


def load_inception(state: dict[str, torch.Tensor], device="cpu") -> FIDInception:
    net = FIDInception()
    net.load_state_dict(state, strict=False)  # without num_batches_tracked
    return net.to(device).eval().requires_grad_(False)
