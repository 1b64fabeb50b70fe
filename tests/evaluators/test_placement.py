"""Device and dtype decisions, with the device as a parameter (the CUDA branches run here too)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from evaluators.placement import plan_placement, resolve_device


@pytest.fixture()
def no_cuda_queries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any question to torch.cuda fails the test: the decisions must come from the arguments."""

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("torch.cuda was consulted")

    monkeypatch.setattr(torch.cuda, "is_available", refuse)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", refuse)


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_trains_float32_master_weights_under_bf16_autocast(device, no_cuda_queries) -> None:
    placement = plan_placement(device, "auto", bf16_supported=True)
    assert placement.device == device and placement.device_type == "cuda"
    assert placement.trained_dtype == torch.float32
    assert placement.autocast_dtype == torch.bfloat16
    assert placement.frozen_dtype == torch.bfloat16
    assert placement.merge_inputs_device == "cpu" and placement.pin_merge_inputs
    assert placement.precision_name == "bf16-autocast"


def test_gpu_without_bf16_falls_back_to_float32(no_cuda_queries) -> None:
    placement = plan_placement("cuda", "auto", bf16_supported=False)
    assert placement.autocast_dtype is None
    assert placement.trained_dtype == placement.frozen_dtype == torch.float32
    assert placement.precision_name == "fp32"


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_explicit_precisions(device, no_cuda_queries) -> None:
    forced = plan_placement(device, "bf16")
    assert forced.autocast_dtype == torch.bfloat16 and forced.trained_dtype == torch.float32
    plain = plan_placement(device, "fp32")
    assert plain.autocast_dtype is None and plain.frozen_dtype == torch.float32


def test_cpu_auto_is_float32_and_never_pins(no_cuda_queries) -> None:
    placement = plan_placement("cpu")
    assert placement.autocast_dtype is None and not placement.pin_merge_inputs
    assert placement.trained_dtype == placement.frozen_dtype == torch.float32


def test_resolve_device_takes_availability_as_a_parameter(no_cuda_queries) -> None:
    assert resolve_device("auto", cuda_available=True) == "cuda"
    assert resolve_device("auto", cuda_available=False) == "cpu"
    assert resolve_device("cpu", cuda_available=True) == "cpu"
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda", cuda_available=False)
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu", cuda_available=True)


def test_unknown_device_or_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported device"):
        plan_placement("mps")
    with pytest.raises(ValueError, match="unknown precision"):
        plan_placement("cpu", "fp8")  # type: ignore[arg-type]


def test_placing_models_casts_a_bf16_checkpoint_to_float32_master_weights() -> None:
    placement = plan_placement("cpu", "bf16")
    trained = placement.place_trained(nn.Linear(4, 4).to(torch.bfloat16))
    frozen = placement.place_frozen(nn.Linear(4, 4).to(torch.bfloat16))
    assert trained.weight.dtype == torch.float32
    # Frozen models stay float32 on the CPU (bf16 is only worth it on a GPU).
    assert frozen.weight.dtype == torch.float32
    with placement.autocast():
        out = trained(torch.ones(2, 4))
    assert out.dtype == torch.bfloat16, "matmuls run in bf16 under autocast"
    assert trained.weight.dtype == torch.float32
