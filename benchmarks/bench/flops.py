"""FLOPs per image of a training step and of an inference, counted by ``torch.utils.flop_counter``.

What is counted: matrix multiplications and convolutions (not element-wise work, normalisation or pooling).
Why a custom rule for the convolution's backward: see :func:`_conv_backward_flop`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from hw1lib.precision import autocast, to_input


def _conv_backward_flop(
    grad_out_shape,
    x_shape,
    w_shape,
    _bias,
    _stride,
    _padding,
    _dilation,
    transposed,
    _output_padding,
    _groups,
    output_mask,
    out_shape=None,
    **_: object,
) -> int:
    """FLOPs of a convolution's backward: grad_input and grad_weight each cost what the forward costs.

    Why not torch's own formula: in torch 2.13 it ignores ``groups`` and counts a grouped (depthwise)
    convolution's backward ``groups`` times over (``groups + 1`` times the forward), which made the
    EfficientNets' training FLOPs many times too high (figures in ``benchmarks/README.md``).
    """
    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def flop_counter() -> FlopCounterMode:
    """``FlopCounterMode`` without a display, with the grouped-convolution backward counted correctly."""
    return FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flop})


def count_flops(
    model: nn.Module, task, images: torch.Tensor, targets: torch.Tensor, device: torch.device, precision: str = "fp32"
) -> tuple[float, float]:
    """FLOPs per image of one training step (forward + backward) and of one inference (forward).

    Counts what ``FlopCounterMode`` counts: matrix multiplications and convolutions (not element-wise
    work, normalisation or pooling), under the engine's autocast for ``precision``.
    """
    x, y = to_input(images, device), targets.to(device)
    model.train()
    with flop_counter() as train_counter:
        with autocast(device, precision):
            loss = task.loss(model(x), y)
        loss.backward()
    model.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad(), flop_counter() as infer_counter, autocast(device, precision):
        model(x)
    return train_counter.get_total_flops() / len(x), infer_counter.get_total_flops() / len(x)
