"""How much memory one sweep trial needs, from configs and safetensors headers alone.

No weights are loaded: parameter counts and dtypes come from the checkpoints' headers, layer
sizes from their ``config.json``, the prompt width from the tokenizer and the spec's prompt
format. The dtypes are those :func:`evaluators.placement.plan_placement` chooses for the probe:

- actor and value model: float32 master weights, float32 gradients, two float32 AdamW states;
- reference and reward model: the frozen dtype (bf16 on a GPU with bf16 autocast);
- activations: the larger of the rollout (KV cache of the batch at prompt + response length,
  the per-step scores generation keeps for the whole response, the reference's logits) and the
  PPO update on one mini-batch (per-layer activations saved for backward for the actor and the
  value model, the logits with their gradient and the entropy temporaries);
- merge inputs: every input's tensors in their checkpoint dtype, in host memory (they never go
  to the GPU; see :func:`sweeps.merge.load_merge_inputs`).

The per-layer activation count follows the Llama-style decoder (norms, projections, rotary
q/k, attention output, gated MLP); other architectures of the same shape are close. On the CPU
every byte is host memory; ``tests/sweeps/test_memory_plan.py`` checks the total against the
measured peak RSS of a real probe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sweeps._checkpoint_io import DTYPE_SIZES, FLOAT_DTYPES, read_layout
from sweeps.exceptions import InvalidSpecError

if TYPE_CHECKING:
    from evaluators.placement import Placement
    from sweeps.spec import SweepSpec

__all__ = [
    "CUDA_CONTEXT_BYTES",
    "Component",
    "MemoryPlan",
    "ModelShape",
    "check_gpu_fit",
    "check_trial_memory",
    "plan_trial_memory",
]

#: What a process's CUDA context and allocator reserve before any tensor exists (measured
#: 0.3-0.6 GiB on recent drivers; the larger figure keeps plans on the safe side).
CUDA_CONTEXT_BYTES = 600 * 2**20
GIB = 2**30


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about one model, read from its header and config."""

    parameters: int
    vocab_size: int
    hidden_size: int
    num_layers: int
    intermediate_size: int
    kv_width: int
    """``num_key_value_heads * head_dim``."""
    tied: bool

    @classmethod
    def from_config(cls, config: dict, parameters: int) -> ModelShape:
        text_config = config.get("text_config")
        text = text_config if isinstance(text_config, dict) else {}
        merged = {**text, **config}
        hidden = int(merged["hidden_size"])
        heads = int(merged.get("num_attention_heads", 1))
        head_dim = int(merged.get("head_dim") or hidden // heads)
        kv_heads = int(merged.get("num_key_value_heads") or heads)
        tied = merged.get("tie_word_embeddings")
        return cls(
            parameters=parameters,
            vocab_size=int(merged["vocab_size"]),
            hidden_size=hidden,
            num_layers=int(merged["num_hidden_layers"]),
            intermediate_size=int(merged.get("intermediate_size") or 4 * hidden),
            kv_width=kv_heads * head_dim,
            tied=True if tied is None else bool(tied),
        )

    def saved_per_token_layer(self) -> int:
        """Activation elements one decoder layer keeps for backward, per token."""
        return 10 * self.hidden_size + 3 * self.kv_width + 4 * self.intermediate_size


@dataclass(frozen=True)
class Component:
    """One line of a memory plan."""

    name: str
    nbytes: int
    on_device: bool
    """False: host memory whatever the device (the merge inputs)."""
    detail: str


@dataclass(frozen=True)
class MemoryPlan:
    """A trial's memory, per component, for one device and precision."""

    device: str
    precision: str
    components: tuple[Component, ...]

    @property
    def device_bytes(self) -> int:
        """What the trial needs on its device (on the CPU: everything)."""
        on_device = [c.nbytes for c in self.components if c.on_device or self.device == "cpu"]
        overhead = CUDA_CONTEXT_BYTES if self.device.startswith("cuda") else 0
        return sum(on_device) + overhead

    @property
    def host_bytes(self) -> int:
        """Host memory beyond the device's (merge inputs) when the device is a GPU."""
        if self.device == "cpu":
            return self.device_bytes
        return sum(c.nbytes for c in self.components if not c.on_device)

    def trials_per_gpu(self, gpu_bytes: int) -> int:
        """How many such trials fit on one GPU of ``gpu_bytes`` (each in its own process)."""
        return gpu_bytes // self.device_bytes

    def lines(self) -> list[str]:
        """A printable table."""
        rows = [f"{'component':<18} {'GiB':>8}  where   detail"]
        for component in self.components:
            where = "device" if component.on_device else "host"
            rows.append(
                f"{component.name:<18} {component.nbytes / GIB:>8.2f}  {where:<6}  "
                f"{component.detail}"
            )
        if self.device.startswith("cuda"):
            rows.append(f"{'CUDA context':<18} {CUDA_CONTEXT_BYTES / GIB:>8.2f}  device")
        rows.append(f"{'device total':<18} {self.device_bytes / GIB:>8.2f}  ({self.device})")
        if self.device != "cpu":
            rows.append(f"{'host total':<18} {self.host_bytes / GIB:>8.2f}")
        return rows


def _float_parameters(path: Path, label: str) -> tuple[int, int, dict]:
    """Parameter count and bytes of the floating tensors of a checkpoint, and its config."""
    layout = read_layout(path, label)
    floats = [t for t in layout.tensors.values() if t.dtype in FLOAT_DTYPES]
    return (
        sum(t.numel for t in floats),
        sum(t.numel * DTYPE_SIZES[t.dtype] for t in floats),
        layout.config,
    )


def estimate(
    *,
    actor: ModelShape,
    value: ModelShape,
    reward: ModelShape | None,
    merge_input_bytes: int,
    batch_size: int,
    mini_batches: int,
    context_length: int,
    response_length: int,
    gradient_checkpointing: bool,
    placement: Placement,
) -> MemoryPlan:
    """The memory plan of one trial from model shapes and probe settings."""
    frozen = placement.frozen_dtype.itemsize
    trained = placement.trained_dtype.itemsize
    compute = placement.autocast_dtype.itemsize if placement.autocast_dtype else trained
    batch, micro = batch_size, batch_size // mini_batches
    sequence = context_length + response_length
    vocab = actor.vocab_size
    # Rollout (no grad): KV cache during generation with the float32 scores generate keeps per
    # step; then those scores stacked next to the reference's logits over the whole sequence.
    kv_cache = 2 * actor.num_layers * batch * sequence * actor.kv_width * compute
    scores = batch * response_length * vocab * 4
    rollout = max(kv_cache + 2 * scores, scores + batch * sequence * vocab * compute)
    # Update (grad) on one mini-batch: saved activations of actor and value model, the logits,
    # their gradient and the entropy temporaries over the response.
    saved_actor = actor.saved_per_token_layer() * actor.num_layers
    saved_value = value.saved_per_token_layer() * value.num_layers
    if gradient_checkpointing:
        saved_actor = (actor.num_layers + 1) * actor.hidden_size
        saved_value = (value.num_layers + 1) * value.hidden_size
    saved = micro * sequence * (saved_actor + saved_value) * compute
    logits = micro * sequence * vocab * compute * 2 + micro * response_length * vocab * 4 * 2
    update = saved + logits
    activations = max(rollout, update)
    trained_parameters = actor.parameters + value.parameters
    components = [
        Component("actor", actor.parameters * trained, True, f"{actor.parameters:,} params"),
        Component("reference", actor.parameters * frozen, True, "frozen copy of the actor"),
        Component("value model", value.parameters * trained, True, f"{value.parameters:,} params"),
        Component(
            "reward model",
            (reward.parameters if reward else 0) * frozen,
            True,
            f"{reward.parameters:,} params" if reward else "rule (no model)",
        ),
        Component("gradients", trained_parameters * trained, True, "actor + value"),
        Component("optimizer", trained_parameters * 8, True, "AdamW, two float32 states"),
        Component(
            "activations",
            activations,
            True,
            f"max(rollout {rollout / GIB:.2f}, update {update / GIB:.2f}) GiB at batch {batch}, "
            f"{context_length}+{response_length} tokens",
        ),
        Component("merge inputs", merge_input_bytes, False, "checkpoint dtype, host memory"),
    ]
    return MemoryPlan(placement.device, placement.precision_name, tuple(components))


def plan_trial_memory(
    spec: SweepSpec,
    *,
    device: Literal["cpu", "cuda"] = "cuda",
    bf16_supported: bool = True,
    trust_remote_code: bool = False,
) -> MemoryPlan:
    """The memory one trial of ``spec`` needs on ``device`` (no weights are loaded).

    Args:
        device: The device to plan for (not necessarily present on this machine).
        bf16_supported: Whether that GPU computes in bf16 (Ampere or newer).

    Raises:
        SweepsError: Unreadable checkpoints, prompts or tokenizer.
    """
    from transformers import AutoTokenizer

    from evaluators.placement import plan_placement
    from evaluators.probe import load_prompts
    from evaluators.prompting import encode_prompt
    from sweeps.merge import preflight

    models, probe = spec.models, spec.probe
    placement = plan_placement(device, probe.precision, bf16_supported=bf16_supported)
    plan = preflight(models.base, models.sft, tokenizer_source=models.tokenizer_source)
    actor = ModelShape.from_config(plan.layouts[0].config, plan.num_parameters)
    if plan.vocab is not None:
        actor = ModelShape(**{**actor.__dict__, "vocab_size": plan.vocab.rows})
    merge_input_bytes = sum(
        sum(t.nbytes for t in layout.tensors.values() if t.dtype in FLOAT_DTYPES)
        for layout in plan.layouts
    )
    reward = None
    if models.reward is not None:
        parameters, _, config = _float_parameters(Path(models.reward), "reward")
        reward = ModelShape.from_config(config, parameters)
    source = probe.value_model
    if source == "auto":
        source = "reward" if reward is not None else "actor"
    if source == "reward" and reward is not None:
        value = reward
    else:
        head = 0 if actor.tied else actor.vocab_size * actor.hidden_size
        value = ModelShape(
            **{**actor.__dict__, "parameters": actor.parameters - head + actor.hidden_size}
        )
    tokenizer = plan.vocab.tokenizer if plan.vocab is not None else None
    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(models.base, trust_remote_code=trust_remote_code)
    prompts = load_prompts(models.prompts)
    context_length = max(len(encode_prompt(tokenizer, text, spec.prompt)) for text in prompts)
    return estimate(
        actor=actor,
        value=value,
        reward=reward,
        merge_input_bytes=merge_input_bytes,
        batch_size=probe.batch_size,
        mini_batches=probe.mini_batches,
        context_length=context_length,
        response_length=probe.response_length,
        gradient_checkpointing=probe.gradient_checkpointing,
        placement=placement,
    )


def check_gpu_fit(plan: MemoryPlan, gpus_per_trial: float, gpu_bytes: int) -> str | None:
    """Refuse a trial that cannot fit on one GPU; warn when ``gpus_per_trial`` packs too many.

    Ray packs ``1 / gpus_per_trial`` trials on one GPU; a probe runs on one GPU, so more than
    one GPU per trial does not give it more memory.

    Returns:
        A warning, or None when the trials fit.

    Raises:
        InvalidSpecError: One trial needs more than a whole GPU.
    """
    need = plan.device_bytes
    if need > gpu_bytes:
        raise InvalidSpecError(
            f"a trial needs {need / GIB:.1f} GiB on its GPU but one GPU has "
            f"{gpu_bytes / GIB:.1f} GiB (the probe does not shard models): use smaller models, "
            "a smaller probe batch or response length, or gradient checkpointing"
        )
    if gpus_per_trial <= 0:
        return None
    share = min(gpus_per_trial, 1.0) * gpu_bytes
    if need > share:
        fits = plan.trials_per_gpu(gpu_bytes)
        return (
            f"resources.gpus_per_trial={gpus_per_trial:g} packs {math.floor(1 / gpus_per_trial)} "
            f"trials per GPU, but each needs {need / GIB:.1f} GiB of {gpu_bytes / GIB:.1f} GiB: "
            f"at most {fits} fit; use gpus_per_trial >= {1 / max(fits, 1):.3g}"
        )
    return None


def check_trial_memory(
    spec: SweepSpec,
    *,
    gpu_bytes: int | None = None,
    bf16_supported: bool | None = None,
    trust_remote_code: bool = False,
) -> str | None:
    """The runner's check before any trial starts: :func:`check_gpu_fit` for ``spec``.

    Args:
        gpu_bytes: Memory of one GPU; None asks ``torch.cuda`` (no GPU: nothing to check).
        bf16_supported: As for :func:`plan_trial_memory`; None asks ``torch.cuda``.

    Returns:
        A warning, or None.

    Raises:
        InvalidSpecError: A trial cannot fit on one GPU.
    """
    if spec.resources.gpus_per_trial <= 0 and spec.probe.device != "cuda":
        return None
    if gpu_bytes is None or bf16_supported is None:
        import torch

        if not torch.cuda.is_available():
            return None
        if gpu_bytes is None:
            gpu_bytes = int(torch.cuda.get_device_properties(0).total_memory)
        if bf16_supported is None:
            bf16_supported = bool(torch.cuda.is_bf16_supported())
    plan = plan_trial_memory(
        spec, device="cuda", bf16_supported=bf16_supported, trust_remote_code=trust_remote_code
    )
    return check_gpu_fit(plan, spec.resources.gpus_per_trial, gpu_bytes)
