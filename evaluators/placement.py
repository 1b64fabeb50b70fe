"""Where each model of a trial lives and in which dtype: every such decision, in one place.

A probe trains two models (the actor and the value model) and keeps two frozen (the reference
and the reward model). Trained models always hold float32 master weights, whatever the
checkpoint's dtype: a bf16 optimizer step at probe learning rates rounds most updates away
(measured: five AdamW steps at lr 3e-6 changed 3.7% of bf16 weights against 99.99% of float32
ones). Speed comes from autocast instead: matmuls run in bf16 while the weights, gradients and
optimizer states stay float32. Frozen models never step, so they may stay in bf16.

:func:`plan_placement` takes the device as a parameter and never asks ``torch.cuda`` unless the
caller leaves ``bf16_supported`` open, so the CUDA decisions are unit-tested on any machine.
The CPU runs the same code path (``precision="bf16"`` autocasts on CPU too); ``auto`` on CPU
means float32 throughout, which is faster there.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["Placement", "Precision", "plan_placement", "resolve_device"]

Precision = Literal["auto", "bf16", "fp32"]
"""``auto``: bf16 autocast on a GPU that supports it, float32 otherwise; ``bf16``: autocast in
bf16 on any device (the CPU included); ``fp32``: no autocast, float32 throughout."""


@dataclass(frozen=True)
class Placement:
    """Device and dtypes of a probe's models and of the merge inputs.

    Attributes:
        device: Where the models run (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        trained_dtype: Master weights of the actor and the value model (always float32).
        frozen_dtype: The reference and the reward model.
        autocast_dtype: Compute dtype of autocast, or None for no autocast.
        merge_inputs_device: Where the stacked merge inputs are held (always the CPU: on a GPU
            they would take ``4 * K * num_parameters`` bytes before any model exists).
        pin_merge_inputs: Page-lock the merge inputs so that each merged tensor is copied to
            the GPU asynchronously (only when the models run on CUDA).
    """

    device: str
    trained_dtype: torch.dtype
    frozen_dtype: torch.dtype
    autocast_dtype: torch.dtype | None
    merge_inputs_device: str
    pin_merge_inputs: bool

    @property
    def device_type(self) -> str:
        return self.device.split(":", 1)[0]

    @property
    def precision_name(self) -> str:
        """``"bf16-autocast"`` or ``"fp32"`` (recorded with a probe)."""
        if self.autocast_dtype is None:
            return "fp32"
        return f"{str(self.autocast_dtype).removeprefix('torch.').replace('bfloat', 'bf')}-autocast"

    def autocast(self) -> AbstractContextManager[object]:
        """A context in which the forward passes run in :attr:`autocast_dtype` (if any)."""
        import torch

        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.autocast_dtype)

    def place_trained(self, model: nn.Module) -> nn.Module:
        """Move a model that will be trained to :attr:`device` with float32 master weights."""
        return model.to(device=self.device, dtype=self.trained_dtype)

    def place_frozen(self, model: nn.Module) -> nn.Module:
        """Move a frozen model to :attr:`device` in :attr:`frozen_dtype` (floating tensors only)."""
        return model.to(device=self.device, dtype=self.frozen_dtype)


def resolve_device(requested: str, *, cuda_available: bool | None = None) -> str:
    """``"cuda"`` or ``"cpu"`` for a requested ``auto | cpu | cuda`` (``auto``: CUDA if any).

    Args:
        cuda_available: Whether a GPU is usable; None asks ``torch.cuda``.

    Raises:
        ValueError: CUDA was requested but is not available, or an unknown device.
    """
    if requested not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown device {requested!r}: use auto, cpu or cuda")
    if requested == "cpu":
        return "cpu"
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    if requested == "cuda" and not cuda_available:
        raise ValueError("device 'cuda' requested but CUDA is not available")
    return "cuda" if cuda_available else "cpu"


def plan_placement(
    device: str, precision: Precision = "auto", *, bf16_supported: bool | None = None
) -> Placement:
    """Decide the device and dtypes of a probe's models.

    Args:
        device: A resolved device (``"cpu"``, ``"cuda"``, ``"cuda:N"``), not ``"auto"``.
        precision: See :data:`Precision`.
        bf16_supported: Whether the GPU computes in bf16 (Ampere or newer); None asks
            ``torch.cuda`` (only consulted for CUDA devices with ``precision="auto"``).

    Raises:
        ValueError: An unknown device type or precision.
    """
    import torch

    kind = device.split(":", 1)[0]
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}: use cpu or cuda")
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"unknown precision {precision!r}: use auto, bf16 or fp32")
    autocast: torch.dtype | None = None
    if precision == "bf16":
        autocast = torch.bfloat16
    elif precision == "auto" and kind == "cuda":
        if bf16_supported is None:
            bf16_supported = torch.cuda.is_bf16_supported()
        # Pre-Ampere GPUs: fp16 autocast would need loss scaling inside TRL's loop, which its
        # PPOTrainer does not do; they get float32.
        autocast = torch.bfloat16 if bf16_supported else None
    frozen = torch.bfloat16 if autocast is torch.bfloat16 and kind == "cuda" else torch.float32
    return Placement(
        device=device,
        trained_dtype=torch.float32,
        frozen_dtype=frozen,
        autocast_dtype=autocast,
        merge_inputs_device="cpu",
        pin_merge_inputs=kind == "cuda",
    )
