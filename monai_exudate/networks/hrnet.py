"""HRNetV2 backbone: parallel multi-resolution branches whose outputs are concatenated at 1/4 resolution."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from monai_exudate.networks.resnet import Bottleneck  # same block and key names as HRNet's stage 1

__all__ = ["BasicBlock", "Bottleneck", "HighResolutionModule", "HRNetV2", "load_hrnet_checkpoint"]

logger = logging.getLogger(__name__)

# Key prefixes stripped from checkpoints saved by wrappers (DataParallel, segmentors with a `backbone` attribute).
_CHECKPOINT_PREFIXES = ("module.", "backbone.", "model.")


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Residual block of two 3x3 convolutions."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = _conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def _make_layer(
    block: type[BasicBlock | Bottleneck], in_channels: int, channels: int, num_blocks: int
) -> nn.Sequential:
    """A sequence of ``num_blocks`` residual blocks; the first projects the shortcut when channels change."""
    out_channels = channels * block.expansion
    downsample = None
    if in_channels != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False), nn.BatchNorm2d(out_channels)
        )
    layers = [block(in_channels, channels, downsample=downsample)]
    layers += [block(out_channels, channels) for _ in range(num_blocks - 1)]
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """One exchange unit: basic-block branches at each resolution, then every branch fused into every other.

    Higher-resolution inputs reach a lower-resolution branch through strided 3x3 convolutions; lower-resolution
    inputs reach a higher-resolution branch through a 1x1 convolution and bilinear upsampling.
    """

    def __init__(self, channels: Sequence[int], num_blocks: int) -> None:
        super().__init__()
        self.num_branches = len(channels)
        self.branches = nn.ModuleList([_make_layer(BasicBlock, c, c, num_blocks) for c in channels])
        self.fuse_layers = nn.ModuleList()
        if self.num_branches > 1:
            for i in range(self.num_branches):
                row = nn.ModuleList()
                for j in range(self.num_branches):
                    row.append(self._fuse_path(channels, j, i))
                self.fuse_layers.append(row)
        self.relu = nn.ReLU(inplace=True)

    @staticmethod
    def _fuse_path(channels: Sequence[int], src: int, dst: int) -> nn.Module:
        if src == dst:
            return nn.Identity()
        if src > dst:
            # Upsampling happens in forward, to the exact size of the target branch.
            return nn.Sequential(
                nn.Conv2d(channels[src], channels[dst], kernel_size=1, bias=False), nn.BatchNorm2d(channels[dst])
            )
        steps = []
        for k in range(dst - src):
            last = k == dst - src - 1
            out_c = channels[dst] if last else channels[src]
            step = [_conv3x3(channels[src], out_c, stride=2), nn.BatchNorm2d(out_c)]
            if not last:
                step.append(nn.ReLU(inplace=True))
            steps.append(nn.Sequential(*step))
        return nn.Sequential(*steps)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.num_branches == 1:
            return xs
        out = []
        for i, row in enumerate(self.fuse_layers):
            y = xs[i]
            for j, path in enumerate(row):
                if j == i:
                    continue
                z = path(xs[j])
                if j > i:
                    z = F.interpolate(z, size=xs[i].shape[-2:], mode="bilinear", align_corners=False)
                y = y + z
            out.append(self.relu(y))
        return out


def _transition(in_channels: Sequence[int], out_channels: Sequence[int]) -> nn.ModuleList:
    """Adapts the branches of one stage to the next; a new branch is made from the lowest-resolution one."""
    layers = nn.ModuleList()
    for i, c_out in enumerate(out_channels):
        if i < len(in_channels):
            if in_channels[i] == c_out:
                layers.append(nn.Identity())
            else:
                layers.append(
                    nn.Sequential(_conv3x3(in_channels[i], c_out), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))
                )
        else:
            steps = []
            for k in range(i + 1 - len(in_channels)):
                c_in = in_channels[-1]
                c = c_out if k == i - len(in_channels) else c_in
                steps.append(nn.Sequential(_conv3x3(c_in, c, stride=2), nn.BatchNorm2d(c), nn.ReLU(inplace=True)))
            layers.append(nn.Sequential(*steps))
    return layers


def _as_tuple(value: int | Sequence[int], length: int, name: str) -> tuple[int, ...]:
    values = (value,) * length if isinstance(value, int) else tuple(int(v) for v in value)
    if len(values) != length or min(values) < 1:
        raise ValueError(f"{name} must be a positive int or {length} positive ints, got {value!r}.")
    return values


class HRNetV2(nn.Module):
    """HRNetV2 backbone returning the four branches upsampled to 1/4 resolution and concatenated (15 * width).

    Module names follow the common HRNet checkpoint layout (``conv1``, ``bn1``, ``conv2``, ``bn2``, ``layer1``,
    ``transition1``, ``stage2``, ..., ``stage4``) so ImageNet HRNet weights load by name; the classification
    parts of such checkpoints (``incre_modules``, ``final_layer``, ``classifier``, ...) are reported as unexpected.

    Args:
        width: channels of the highest-resolution branch; branches have ``width * (1, 2, 4, 8)`` channels
            (18 for HRNetV2-W18, 48 for HRNetV2-W48).
        in_channels: image channels.
        pretrained_path: optional local checkpoint loaded with :func:`load_hrnet_checkpoint`.
        num_blocks: residual blocks per branch, one int for all stages or four ints (stage1..stage4).
        num_modules: exchange units of stages 2, 3, 4 (HRNetV2: 1, 4, 3); one int applies to all three.
        stage1_channels: bottleneck width of stage 1 (its output has four times as many channels).
        stem_channels: channels of the two stride-2 stem convolutions.
        min_match: fraction of the model's tensors a checkpoint must provide (see :func:`load_hrnet_checkpoint`).
    """

    feature_stride = 4

    def __init__(
        self,
        width: int = 48,
        in_channels: int = 3,
        pretrained_path: str | None = None,
        num_blocks: int | Sequence[int] = 4,
        num_modules: int | Sequence[int] = (1, 4, 3),
        stage1_channels: int = 64,
        stem_channels: int = 64,
        min_match: float = 0.9,
    ) -> None:
        super().__init__()
        if width < 1 or in_channels < 1 or stage1_channels < 1 or stem_channels < 1:
            raise ValueError("width, in_channels, stage1_channels and stem_channels must be positive.")
        blocks = _as_tuple(num_blocks, 4, "num_blocks")
        modules = _as_tuple(num_modules, 3, "num_modules")
        self.width = width
        self.branch_channels = tuple(width * 2**i for i in range(4))
        self.out_channels = sum(self.branch_channels)

        self.conv1 = nn.Conv2d(in_channels, stem_channels, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.conv2 = nn.Conv2d(stem_channels, stem_channels, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _make_layer(Bottleneck, stem_channels, stage1_channels, blocks[0])

        previous = [stage1_channels * Bottleneck.expansion]
        for stage in range(2, 5):
            channels = list(self.branch_channels[:stage])
            setattr(self, f"transition{stage - 1}", _transition(previous, channels))
            units = [HighResolutionModule(channels, blocks[stage - 1]) for _ in range(modules[stage - 2])]
            setattr(self, f"stage{stage}", nn.Sequential(*units))
            previous = channels

        self._init_weights()
        if pretrained_path is not None:
            load_hrnet_checkpoint(self, pretrained_path, min_match=min_match)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @staticmethod
    def _apply_transition(transition: nn.ModuleList, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [layer(xs[i] if i < len(xs) else xs[-1]) for i, layer in enumerate(transition)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``[B, in_channels, H, W]`` to ``[B, 15 * width, ceil(H / 4), ceil(W / 4)]``."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        xs = self.stage2(self._apply_transition(self.transition1, xs))
        xs = self.stage3(self._apply_transition(self.transition2, xs))
        xs = self.stage4(self._apply_transition(self.transition3, xs))
        size = xs[0].shape[-2:]
        ups = [xs[0]] + [F.interpolate(t, size=size, mode="bilinear", align_corners=False) for t in xs[1:]]
        return torch.cat(ups, dim=1)


def _unwrap_state_dict(obj: object, path: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "net"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"Checkpoint {path} does not hold a state dict.")
    out = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            continue
        name = str(key)
        for prefix in _CHECKPOINT_PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix) :]
        out[name] = value
    return out


def load_hrnet_checkpoint(model: nn.Module, path: str, min_match: float = 0.9) -> tuple[list[str], list[str]]:
    """Load a local HRNet checkpoint into ``model`` by key name and return ``(missing, unexpected)`` keys.

    ``state_dict``/``model`` wrappers and ``module.``/``backbone.``/``model.`` key prefixes are removed first.
    Raises FileNotFoundError when ``path`` is absent and ValueError naming the file when a matching key has a
    different shape or when fewer than ``min_match`` of the model's tensors (BatchNorm counters excluded)
    are found in the checkpoint.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"HRNet checkpoint not found: {path}")
    state = _unwrap_state_dict(torch.load(path, map_location="cpu", weights_only=True), path)
    own = model.state_dict()
    mismatched = [
        f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    if mismatched:
        raise ValueError(f"Checkpoint {path} has {len(mismatched)} shape mismatches, e.g. {mismatched[:5]}")
    counted = [k for k in own if not k.endswith("num_batches_tracked")]
    matched = [k for k in counted if k in state]
    missing = [k for k in counted if k not in state]
    unexpected = [k for k in state if k not in own]
    if not matched or len(matched) < min_match * len(counted):
        raise ValueError(
            f"Checkpoint {path} matches only {len(matched)} of {len(counted)} model tensors; "
            f"missing e.g. {missing[:5]}, unexpected e.g. {unexpected[:5]}"
        )
    model.load_state_dict(state, strict=False)
    if missing:
        logger.warning("Checkpoint %s lacks %d tensors, e.g. %s", path, len(missing), missing[:5])
    if unexpected:
        logger.info("Checkpoint %s has %d unused tensors, e.g. %s", path, len(unexpected), unexpected[:5])
    return missing, unexpected
