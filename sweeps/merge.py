"""The BAI merge engine: one streamed pass, or in memory for sweep trials.

Balanced Actor Initialization merges N SFT models and the pretrained base in two stages,
``M_sft = sum_i w_i M_i`` then ``M_bai = alpha M_base + (1 - alpha) M_sft``. Both stages are one
linear combination with coefficients ``c_base = alpha`` and ``c_i = (1 - alpha) w_i``, so every
output tensor is ``sum_k c_k T_k``, accumulated in float32 and cast to the output dtype (float32
outputs are accumulated in float64, so that they too are within one unit in the last place of
the exact result).

- :func:`preflight` reads only config files and safetensors headers and refuses incompatible
  checkpoints before anything is written.
- :func:`merge_bai` streams one tensor at a time into pre-planned output shards inside a
  temporary directory that is renamed into place at the end.
- :func:`load_merge_inputs` loads the inputs once (into host memory, in their checkpoint dtype);
  :meth:`MergeInputs.build_actor` then builds a fresh ``transformers`` model for any
  ``(w, alpha)`` on the actor's device without touching the disk.

Checkpoints whose vocabularies differ are merged with their embedding and LM-head rows matched by
token (``tokenizer_source``: ``base``, ``union`` or one model's path, as in mergekit; see
:mod:`sweeps._vocab`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING

from sweeps._checkpoint_io import (
    CONFIG_FILE,
    FLOAT_DTYPES,
    GENERATION_CONFIG_FILE,
    HASH_ALGORITHM,
    TOKENIZER_FILES,
    CheckpointLayout,
    OutputTensor,
    ShardedWriter,
    TensorInfo,
    TensorReader,
    hash_file,
    plan_shards,
    read_layout,
    shard_file_names,
)
from sweeps._vocab import VocabPlan, combine_rows, plan_vocab
from sweeps.exceptions import (
    CheckpointNotFoundError,
    IncompatibleCheckpointsError,
    InvalidRatiosError,
    MergeOptionError,
)

if TYPE_CHECKING:
    import torch
    import transformers

__all__ = [
    "DEFAULT_MAX_SHARD_SIZE",
    "MergeInputs",
    "MergePlan",
    "bai_coefficients",
    "load_merge_inputs",
    "merge_bai",
    "mergekit_yaml",
    "output_shard_names",
    "parse_dtype",
    "parse_size",
    "preflight",
    "validate_ratios",
]

#: Default largest output shard, as ``save_pretrained`` writes them.
DEFAULT_MAX_SHARD_SIZE = "5GB"
RECIPE_FILE = "bai_recipe.json"
RATIO_TOLERANCE = 1e-6
#: Columns per block of the one-pass combination (a float32 block of 3 inputs is 1.5 MB).
BLOCK_ELEMENTS = 1 << 17

_DTYPE_ALIASES = {
    "bfloat16": "BF16",
    "bf16": "BF16",
    "float16": "F16",
    "fp16": "F16",
    "half": "F16",
    "f16": "F16",
    "f32": "F32",
    "float32": "F32",
    "fp32": "F32",
    "float": "F32",
}
_TORCH_NAMES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32", "F64": "float64"}
# Accumulation dtype per output dtype: float32 carries 16-bit results exactly enough, float32
# results need float64.
_ACCUMULATION = {"BF16": "F32", "F16": "F32", "F32": "F64", "F64": "F64"}
_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_SIZE_UNITS |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
# Config keys that must agree between inputs, with the name used in error messages.
_CONFIG_CHECKS = (
    ("architectures", "architecture"),
    ("model_type", "model type"),
    ("vocab_size", "vocabulary size"),
    ("tie_word_embeddings", "tied embeddings setting"),
)


@dataclass(frozen=True)
class MergePlan:
    """What a merge will read and write, established from headers only by :func:`preflight`.

    Attributes:
        base: The pretrained base checkpoint directory.
        sfts: The SFT checkpoint directories, in the order of the weights.
        architecture: The shared ``architectures`` entry of the configs.
        model_type: The shared ``model_type``.
        vocab_size: The shared vocabulary size (None if the config has none).
        tie_word_embeddings: Whether the input embeddings and the LM head share weights.
        tensors: The merged tensors in reading order, with the base's dtypes.
    """

    base: Path
    sfts: tuple[Path, ...]
    architecture: str
    model_type: str
    vocab_size: int | None
    tie_word_embeddings: bool
    tensors: tuple[OutputTensor, ...]
    layouts: tuple[CheckpointLayout, ...] = field(repr=False, compare=False)
    vocab: VocabPlan | None = field(default=None, repr=False, compare=False)
    """How vocabulary rows are matched by token (None: the inputs share one vocabulary)."""

    @property
    def checkpoints(self) -> tuple[Path, ...]:
        """Base first, then the SFT checkpoints: the order of :func:`bai_coefficients`."""
        return (self.base, *self.sfts)

    @property
    def num_parameters(self) -> int:
        return sum(math.prod(tensor.shape) for tensor in self.tensors)

    def output_tensors(self, dtype: str | None = None) -> list[OutputTensor]:
        """The output tensors: floating ones in ``dtype`` (default: as in the base)."""
        return [
            OutputTensor(t.name, dtype if dtype and t.dtype in FLOAT_DTYPES else t.dtype, t.shape)
            for t in self.tensors
        ]

    def describe(self) -> list[str]:
        """Human-readable lines summarising the plan (used by ``--dry-run``)."""
        dtypes = sorted({tensor.dtype for tensor in self.tensors})
        lines = [
            f"base          {self.base}",
            *(f"sft[{index}]        {path}" for index, path in enumerate(self.sfts)),
            f"architecture  {self.architecture} (model_type {self.model_type})",
            f"vocab size    {self.vocab_size}"
            + (
                f" (tokenizer_source {self.vocab.source}, {len(self.vocab.added_tokens)} tokens "
                "not in the base)"
                if self.vocab is not None
                else ""
            ),
            f"tied embeds   {self.tie_word_embeddings}",
            f"tensors       {len(self.tensors)} ({self.num_parameters:,} parameters, "
            f"{'/'.join(_TORCH_NAMES.get(d, d) for d in dtypes)})",
        ]
        return lines


def parse_dtype(value: str | torch.dtype | None) -> str | None:
    """Normalise an output dtype (``"bf16"``, ``"float32"``, ``torch.float16``...) to safetensors'.

    Raises:
        MergeOptionError: Not one of bfloat16, float16, float32.
    """
    if value is None:
        return None
    name = str(value).removeprefix("torch.").lower()
    if name not in _DTYPE_ALIASES:
        raise MergeOptionError(
            f"unsupported output dtype {value!r}: use bfloat16, float16 or float32"
        )
    return _DTYPE_ALIASES[name]


def parse_size(value: str | int) -> int:
    """Parse a shard size such as ``"5GB"``, ``"200MB"``, ``"512MiB"`` or a byte count.

    Raises:
        MergeOptionError: Not a positive size.
    """
    if isinstance(value, int):
        size = value
    else:
        text = value.strip().upper().replace(" ", "")
        number = text.rstrip("KMGTIB")
        unit = text[len(number) :]
        try:
            size = int(float(number) * _SIZE_UNITS[unit])
        except (ValueError, KeyError):
            raise MergeOptionError(
                f"invalid shard size {value!r}: use e.g. 5GB, 200MB or a byte count"
            ) from None
    if size <= 0:
        raise MergeOptionError(f"invalid shard size {value!r}: must be positive")
    return size


def validate_ratios(
    weights: Sequence[float], alpha: float, n_sft: int, *, normalize: bool = False
) -> tuple[list[float], float]:
    """Check BAI ratios: ``n_sft`` weights >= 0 summing to 1 (within 1e-6), alpha in [0, 1].

    Args:
        weights: One weight per SFT checkpoint.
        alpha: The weight of the pretrained base in the second stage.
        n_sft: The number of SFT checkpoints.
        normalize: Divide the weights by their sum instead of requiring it to be 1.

    Returns:
        The weights (normalised if asked) and alpha, as floats.

    Raises:
        InvalidRatiosError: With a message naming the offending value.
    """
    values = [float(weight) for weight in weights]
    if n_sft < 1:
        raise InvalidRatiosError("a BAI merge needs at least one SFT checkpoint")
    if len(values) != n_sft:
        raise InvalidRatiosError(
            f"got {len(values)} weights for {n_sft} SFT checkpoints: give one weight per --sft"
        )
    for index, weight in enumerate(values):
        if not math.isfinite(weight) or weight < 0:
            raise InvalidRatiosError(f"weight {index} is {weight}: weights must be >= 0")
    total = math.fsum(values)
    if normalize:
        if total <= 0:
            raise InvalidRatiosError("cannot normalise weights that sum to 0")
        values = [weight / total for weight in values]
    elif abs(total - 1.0) > RATIO_TOLERANCE:
        raise InvalidRatiosError(
            f"weights sum to {total:.9g}, not 1 (pass --normalize to rescale them)"
        )
    alpha = float(alpha)
    if not math.isfinite(alpha) or not 0.0 <= alpha <= 1.0:
        raise InvalidRatiosError(f"alpha is {alpha}: it must lie in [0, 1]")
    return values, alpha


def bai_coefficients(weights: Sequence[float], alpha: float) -> list[float]:
    """The one-pass coefficients ``[alpha, (1 - alpha) w_1, ..., (1 - alpha) w_N]`` (base first)."""
    return [float(alpha), *((1.0 - float(alpha)) * float(weight) for weight in weights)]


def preflight(
    base: str | os.PathLike,
    sfts: Sequence[str | os.PathLike],
    *,
    tokenizer_source: str = "base",
) -> MergePlan:
    """Check, from configs and safetensors headers only, that the checkpoints can be merged.

    Compares architecture, model type, vocabulary size, tied embeddings, tensor names and
    shapes of every SFT checkpoint against the base. When the vocabularies differ, or
    ``tokenizer_source`` is not ``base``, the tokenizers are read too and the vocabulary
    tensors' rows are matched by token (see :mod:`sweeps._vocab`).

    Args:
        tokenizer_source: ``"base"``, ``"union"`` or the path of one of the checkpoints.

    Raises:
        CheckpointNotFoundError: A directory or its weights are missing.
        InvalidCheckpointError: A config or header is malformed.
        IncompatibleCheckpointsError: One line naming the mismatch, the tensor and both paths.
    """
    if not sfts:
        raise InvalidRatiosError("a BAI merge needs at least one SFT checkpoint")
    base_layout = read_layout(Path(base), "base")
    sft_layouts = [read_layout(Path(path), f"sft[{i}]") for i, path in enumerate(sfts)]
    base_config = base_layout.config
    base_tied = _tied_embeddings(base_config)
    for index, layout in enumerate(sft_layouts):
        where = f"base {base_layout.path} vs sft[{index}] {layout.path}"
        for key, label in _CONFIG_CHECKS:
            ours, theirs = _config_value(base_config, key), _config_value(layout.config, key)
            if key == "tie_word_embeddings":
                ours, theirs = base_tied, _tied_embeddings(layout.config)
            if ours != theirs and key != "vocab_size":
                raise IncompatibleCheckpointsError(
                    f"{label} mismatch: {ours} vs {theirs} ({where})"
                )
    vocab_plan = plan_vocab((base_layout, *sft_layouts), tokenizer_source)
    vocab_names = vocab_plan.tensor_names if vocab_plan is not None else frozenset()
    for index, layout in enumerate(sft_layouts):
        where = f"base {base_layout.path} vs sft[{index}] {layout.path}"
        _compare_tensors(base_layout, layout, where, vocab_names)
    ordered = sorted(base_layout.tensors.values(), key=lambda t: (t.file.name, t.offset))
    for tensor in ordered:
        for index, layout in enumerate(sft_layouts):
            other = layout.tensors[tensor.name].dtype
            if (tensor.dtype in FLOAT_DTYPES) != (other in FLOAT_DTYPES):
                raise IncompatibleCheckpointsError(
                    f"tensor {tensor.name!r} is {tensor.dtype} in base {base_layout.path} but "
                    f"{other} in sft[{index}] {layout.path}: only float tensors can be merged"
                )
    architectures = base_config.get("architectures") or ["?"]
    configured = _config_value(base_config, "vocab_size")
    vocab = vocab_plan.rows if vocab_plan is not None else configured

    def output_shape(tensor: TensorInfo) -> tuple[int, ...]:
        if vocab_plan is not None and tensor.name in vocab_names:
            return (vocab_plan.rows, *tensor.shape[1:])
        return tensor.shape

    return MergePlan(
        base=base_layout.path,
        sfts=tuple(layout.path for layout in sft_layouts),
        architecture=str(architectures[0]),
        model_type=str(base_config.get("model_type", "?")),
        vocab_size=int(vocab) if isinstance(vocab, int) else None,
        tie_word_embeddings=base_tied,
        tensors=tuple(OutputTensor(t.name, t.dtype, output_shape(t)) for t in ordered),
        layouts=(base_layout, *sft_layouts),
        vocab=vocab_plan,
    )


def _config_value(config: dict, key: str) -> object:
    if key in config:
        return config[key]
    text_config = config.get("text_config")
    return text_config.get(key) if isinstance(text_config, dict) else None


def _tied_embeddings(config: dict) -> bool:
    # transformers' default for PretrainedConfig.tie_word_embeddings is True.
    value = _config_value(config, "tie_word_embeddings")
    return True if value is None else bool(value)


def _compare_tensors(
    base: CheckpointLayout, other: CheckpointLayout, where: str, vocab_names: frozenset[str]
) -> None:
    for name in sorted(base.tensors):
        if name not in other.tensors:
            raise IncompatibleCheckpointsError(
                f"tensor {name!r} is in the base but missing from the SFT checkpoint ({where})"
            )
        ours, theirs = base.tensors[name].shape, other.tensors[name].shape
        if name in vocab_names:
            ours, theirs = ours[1:], theirs[1:]
        if ours != theirs:
            raise IncompatibleCheckpointsError(
                f"tensor {name!r} has shape {list(ours)} vs {list(theirs)} ({where})"
            )
    extra = sorted(set(other.tensors) - set(base.tensors))
    if extra:
        raise IncompatibleCheckpointsError(
            f"tensor {extra[0]!r} is in the SFT checkpoint but missing from the base ({where})"
        )


def _check_device(device: str) -> str:
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise MergeOptionError(f"unknown device {device!r}: use cpu or cuda") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise MergeOptionError(f"device {device!r} was requested but CUDA is not available")
    if parsed.type not in ("cpu", "cuda"):
        raise MergeOptionError(f"unsupported device {device!r}: use cpu or cuda")
    return str(parsed)


def _coefficient_tensors(
    weights: Sequence[float], alpha: float, device: str
) -> dict[torch.dtype, torch.Tensor]:
    import torch

    values = bai_coefficients(weights, alpha)
    return {
        dtype: torch.tensor(values, dtype=dtype, device=device)
        for dtype in (torch.float32, torch.float64)
    }


def _combine_blocks(
    coefficients: dict[torch.dtype, torch.Tensor],
    blocks: Iterable[torch.Tensor],
    output: torch.Tensor,
    output_dtype: str,
) -> torch.Tensor:
    """Write ``sum_k c_k T_k`` into the flat ``output``, one ``[K, width]`` column block at a time.

    Each block is one fused matmul in the accumulation dtype; blocks of :data:`BLOCK_ELEMENTS`
    columns keep the intermediates in cache. The streamed and the in-memory path feed this the
    same contiguous blocks, so their results are bitwise equal.
    """
    import torch

    accumulate = getattr(torch, _TORCH_NAMES[_ACCUMULATION[output_dtype]])
    row = coefficients[accumulate].view(1, -1)
    result = torch.empty((1, BLOCK_ELEMENTS), dtype=accumulate, device=output.device)
    start = 0
    for block in blocks:
        width = block.shape[1]
        if block.dtype != accumulate:
            block = block.to(accumulate)
        torch.mm(row, block, out=result[:, :width])
        output[start : start + width].copy_(result[0, :width])
        start += width
    return output


def _combine_vocab_tensor(
    vocab: VocabPlan,
    coefficients: dict[torch.dtype, torch.Tensor],
    inputs: Sequence[torch.Tensor],
    sources: Sequence[torch.Tensor],
    output: OutputTensor,
    device: str,
) -> torch.Tensor:
    """A vocabulary tensor (embeddings, LM head): rows matched by token across the inputs."""
    import torch

    accumulate = getattr(torch, _TORCH_NAMES[_ACCUMULATION[output.dtype]])
    values = coefficients[torch.float64].tolist()
    weights = vocab.row_weights(values, accumulate).to(device)
    target = getattr(torch, _TORCH_NAMES[output.dtype])
    merged = torch.empty(output.shape, dtype=target, device=device)
    return combine_rows(weights, inputs, sources, merged)


@contextmanager
def _single_threaded() -> Iterator[None]:
    """Run torch ops on one thread: on cache-sized blocks, thread hand-offs cost more than they
    save (measured 10x slower with 2 threads on a busy 2-core machine), and it leaves the other
    cores to the file hashing and to concurrent trials."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _read_blocks(inputs: Sequence[torch.Tensor], buffer: torch.Tensor) -> Iterator[torch.Tensor]:
    """Yield ``[K, width]`` contiguous column blocks of the flat ``inputs``, reusing ``buffer``."""
    numel = inputs[0].numel()
    for start in range(0, numel, BLOCK_ELEMENTS):
        width = min(BLOCK_ELEMENTS, numel - start)
        block = buffer[: len(inputs) * width].view(len(inputs), width)
        for row, tensor in enumerate(inputs):
            block[row].copy_(tensor[start : start + width])
        yield block


def merge_bai(
    *,
    base: str | os.PathLike,
    sfts: Sequence[str | os.PathLike],
    weights: Sequence[float],
    alpha: float,
    out: str | os.PathLike,
    dtype: str | torch.dtype | None = None,
    max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE,
    device: str = "cpu",
    tokenizer_from: str | os.PathLike | None = None,
    tokenizer_source: str = "base",
    normalize: bool = False,
    export_mergekit: str | os.PathLike | None = None,
    overwrite: bool = False,
    on_tensor: Callable[[str, int], None] | None = None,
) -> Path:
    """Write the BAI merge of ``base`` and ``sfts`` to ``out`` as a complete HF checkpoint.

    Args:
        base: The pretrained base checkpoint directory.
        sfts: The SFT checkpoint directories (N >= 1).
        weights: One weight per SFT checkpoint, >= 0, summing to 1.
        alpha: The weight of the base, in [0, 1].
        out: The output directory; must not exist unless ``overwrite``.
        dtype: Output dtype of floating tensors (default: each tensor's dtype in the base).
        max_shard_size: Largest output shard, e.g. ``"5GB"``.
        device: ``"cpu"`` or ``"cuda"`` (only when available) for the arithmetic.
        tokenizer_from: Directory to copy tokenizer files from (default: the base).
        tokenizer_source: The output vocabulary: ``"base"``, ``"union"`` or the path of one of
            the inputs; rows of differing vocabularies are matched by token
            (:mod:`sweeps._vocab`) and the output tokenizer is written.
        normalize: Rescale the weights to sum to 1 instead of rejecting them.
        export_mergekit: Also write an equivalent mergekit-multi YAML to this file.
        overwrite: Replace an existing output directory (only once the merge succeeded).
        on_tensor: Called with each tensor's name and output bytes once it is written.

    Returns:
        The output directory.

    Raises:
        SweepsError: Any invalid input, before anything is written.
    """
    weights, alpha = validate_ratios(weights, alpha, len(sfts), normalize=normalize)
    out_dtype = parse_dtype(dtype)
    shard_size = parse_size(max_shard_size)
    out_dir = Path(out)
    if out_dir.exists() and not overwrite:
        raise MergeOptionError(f"output {out_dir} already exists (pass --overwrite to replace it)")
    tokenizer_dir = Path(tokenizer_from) if tokenizer_from is not None else None
    if tokenizer_dir is not None and not any(
        (tokenizer_dir / n).is_file() for n in TOKENIZER_FILES
    ):
        raise CheckpointNotFoundError(f"--tokenizer-from {tokenizer_dir} holds no tokenizer files")
    plan = preflight(base, sfts, tokenizer_source=tokenizer_source)
    if plan.vocab is not None and tokenizer_dir is not None:
        raise MergeOptionError(
            "--tokenizer-from cannot be combined with a token-matched vocabulary "
            f"(tokenizer_source {tokenizer_source!r}): the output tokenizer comes from the inputs"
        )
    device = _check_device(device)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    # Input hashes for the recipe are computed on a second thread while the merge runs.
    hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bai-hash")
    hashes = {
        file: hasher.submit(hash_file, file) for layout in plan.layouts for file in layout.files
    }
    try:
        coefficients = _coefficient_tensors(weights, alpha, device)
        _stream_merge(plan, coefficients, staging, out_dtype, shard_size, on_tensor, device)
        _write_metadata(
            plan,
            staging,
            weights=weights,
            alpha=alpha,
            out_dtype=out_dtype,
            tokenizer_dir=tokenizer_dir or plan.base,
            tokenizer_source=tokenizer_source,
            hashes={file: future.result() for file, future in hashes.items()},
        )
        if export_mergekit is not None:
            text = mergekit_yaml(plan, weights, alpha, out_dtype, tokenizer_dir or plan.base)
            Path(export_mergekit).write_text(text)
        _move_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        hasher.shutdown(wait=True, cancel_futures=True)
    return out_dir


def _stream_merge(
    plan: MergePlan,
    coefficients: dict[torch.dtype, torch.Tensor],
    staging: Path,
    out_dtype: str | None,
    shard_size: int,
    on_tensor: Callable[[str, int], None] | None,
    device: str,
) -> None:
    import torch

    outputs = plan.output_tensors(out_dtype)
    writer = ShardedWriter(staging, outputs, shard_size)
    buffers: dict[torch.dtype, torch.Tensor] = {}
    vocab = plan.vocab
    sources = vocab.source_tensors() if vocab is not None else []
    try:
        with _single_threaded(), TensorReader() as reader:
            for output in outputs:
                infos = [layout.tensors[output.name] for layout in plan.layouts]
                if output.dtype not in FLOAT_DTYPES:
                    merged = reader.read(infos[0])
                elif vocab is not None and output.name in vocab.tensor_names:
                    merged = _combine_vocab_tensor(
                        vocab,
                        coefficients,
                        [reader.read(info, slot) for slot, info in enumerate(infos)],
                        sources,
                        output,
                        device,
                    )
                else:
                    accumulate = getattr(torch, _TORCH_NAMES[_ACCUMULATION[output.dtype]])
                    if accumulate not in buffers:
                        size = len(infos) * BLOCK_ELEMENTS
                        buffers[accumulate] = torch.empty(size, dtype=accumulate, device=device)
                    # One reused read buffer per input: memory is bounded by K tensors.
                    views = [reader.read(info, slot).reshape(-1) for slot, info in enumerate(infos)]
                    target = getattr(torch, _TORCH_NAMES[output.dtype])
                    merged = torch.empty(math.prod(output.shape), dtype=target, device=device)
                    blocks = _read_blocks(views, buffers[accumulate])
                    merged = _combine_blocks(coefficients, blocks, merged, output.dtype)
                    merged = merged.view(output.shape)
                writer.write(output.name, merged)
                if on_tensor is not None:
                    on_tensor(output.name, output.nbytes)
        writer.finish()
    finally:
        writer.close()


def _write_metadata(
    plan: MergePlan,
    staging: Path,
    *,
    weights: list[float],
    alpha: float,
    out_dtype: str | None,
    tokenizer_dir: Path,
    tokenizer_source: str,
    hashes: dict[Path, str],
) -> None:
    config = json.loads((plan.base / CONFIG_FILE).read_text())
    if plan.vocab is not None:
        holder = config["text_config"] if "vocab_size" not in config else config
        holder["vocab_size"] = plan.vocab.rows
    if out_dtype is not None:
        name = _TORCH_NAMES[out_dtype]
        keys = [key for key in ("dtype", "torch_dtype") if key in config] or ["dtype"]
        for key in keys:
            config[key] = name
    (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    if (plan.base / GENERATION_CONFIG_FILE).is_file():
        shutil.copyfile(plan.base / GENERATION_CONFIG_FILE, staging / GENERATION_CONFIG_FILE)
    if plan.vocab is not None:
        plan.vocab.tokenizer.save_pretrained(staging)
    else:
        for name in TOKENIZER_FILES:
            if (tokenizer_dir / name).is_file():
                shutil.copyfile(tokenizer_dir / name, staging / name)
    dtypes = sorted({tensor.dtype for tensor in plan.output_tensors(out_dtype)})
    recipe = {
        "method": "bai",
        "formula": "alpha * base + (1 - alpha) * sum_i w_i * sft_i",
        "base": _describe_input(plan.layouts[0], hashes),
        "sfts": [_describe_input(layout, hashes) for layout in plan.layouts[1:]],
        "weights": weights,
        "alpha": alpha,
        "coefficients": bai_coefficients(weights, alpha),
        "accumulation_dtype": {
            _TORCH_NAMES[d]: _TORCH_NAMES[_ACCUMULATION[d]] for d in dtypes if d in _ACCUMULATION
        },
        "dtype": (
            _TORCH_NAMES[out_dtype] if out_dtype else "/".join(_TORCH_NAMES[d] for d in dtypes)
        ),
        "tokenizer_from": str(tokenizer_dir.resolve()),
        # As asked (the vocabulary record below replaces it when rows were matched by token).
        "tokenizer_source": tokenizer_source,
        "bai_sweep_version": _our_version(),
    }
    if plan.vocab is not None:
        recipe |= plan.vocab.recipe()
        recipe["tokenizer_from"] = None
    (staging / RECIPE_FILE).write_text(json.dumps(recipe, indent=2) + "\n")
    (staging / "README.md").write_text(_model_card(plan, recipe))


def _describe_input(layout: CheckpointLayout, hashes: dict[Path, str]) -> dict[str, object]:
    return {
        "path": str(layout.path.resolve()),
        HASH_ALGORITHM: {file.name: hashes[file] for file in layout.files},
    }


def _our_version() -> str:
    try:
        return package_version("bai-sweep")
    except PackageNotFoundError:
        return "unknown"


def _model_card(plan: MergePlan, recipe: dict) -> str:
    rows = [f"| base | `{recipe['base']['path']}` | {recipe['coefficients'][0]:.6g} |"]
    for index, sft in enumerate(recipe["sfts"]):
        coefficient = recipe["coefficients"][index + 1]
        rows.append(
            f"| sft[{index}] (w={recipe['weights'][index]:.6g}) | `{sft['path']}` | "
            f"{coefficient:.6g} |"
        )
    table = "\n".join(rows)
    return f"""---
library_name: transformers
tags:
- merge
- bai
- bai-sweep
base_model: {recipe["base"]["path"]}
---

# BAI merge (alpha = {recipe["alpha"]:.6g})

This checkpoint is a Balanced Actor Initialization (BAI, arXiv 2509.00309) merge made by
bai-sweep {recipe["bai_sweep_version"]}:

    M_sft = sum_i w_i * sft_i
    M_bai = alpha * base + (1 - alpha) * M_sft

computed in one pass as `sum_k c_k * T_k` (float32 accumulation, float64 for float32 outputs;
output dtype {recipe["dtype"]}).

| input | path | coefficient c_k |
|---|---|---|
{table}

Architecture `{plan.architecture}` ({plan.num_parameters:,} parameters). The exact recipe,
with a content hash ({HASH_ALGORITHM}) of every input file, is in `{RECIPE_FILE}`.
"""


def _move_into_place(staging: Path, out_dir: Path) -> None:
    if not out_dir.exists():
        staging.rename(out_dir)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    out_dir.rename(trash / out_dir.name)
    staging.rename(out_dir)
    shutil.rmtree(trash, ignore_errors=True)


def mergekit_yaml(
    plan: MergePlan,
    weights: Sequence[float],
    alpha: float,
    dtype: str | None = None,
    tokenizer_dir: Path | None = None,
) -> str:
    """An equivalent two-stage ``mergekit-multi`` configuration (linear merges, no renormalising).

    The intermediate SFT merge is kept in float32 so that the result matches ours.
    """
    import yaml

    out_dtype = _TORCH_NAMES[dtype or plan.tensors[0].dtype]
    vocab = plan.vocab
    if vocab is None:
        tokenizer_source = str((tokenizer_dir or plan.base).resolve())
    elif vocab.source == "base":
        tokenizer_source = str(plan.base.resolve())
    else:
        tokenizer_source = vocab.source
    stage_one: dict[str, object] = {
        "name": "bai-sft",
        "merge_method": "linear",
        "models": [
            {"model": str(path.resolve()), "parameters": {"weight": float(weight)}}
            for path, weight in zip(plan.sfts, weights, strict=True)
        ],
        "parameters": {"normalize": False},
        "dtype": "float32",
        "out_dtype": "float32",
    }
    stage_two = {
        "merge_method": "linear",
        "models": [
            {"model": str(plan.base.resolve()), "parameters": {"weight": float(alpha)}},
            {"model": "bai-sft", "parameters": {"weight": 1.0 - float(alpha)}},
        ],
        "parameters": {"normalize": False},
        "dtype": "float32",
        "out_dtype": out_dtype,
        "tokenizer_source": tokenizer_source,
    }
    if vocab is not None:
        # The intermediate SFT merge keeps every token of the SFT models for stage two.
        stage_one["tokenizer_source"] = "union"
    header = (
        f"# BAI merge exported by bai-sweep {_our_version()}: run with\n"
        "#   mergekit-multi THIS.yaml --intermediate-dir DIR --out-path OUT\n"
    )
    return header + yaml.safe_dump_all([stage_one, stage_two], sort_keys=False)


def _stack_dtype(dtypes: Sequence[str]) -> str:
    """The dtype the in-memory inputs of one tensor are stacked in: the checkpoints' own dtype
    when they agree (upcast block by block when combined), else float32 (float64 if any is)."""
    if len(set(dtypes)) == 1:
        return dtypes[0]
    return "F64" if "F64" in dtypes else "F32"


class MergeInputs:
    """Merge inputs loaded once (stacked per tensor, in host memory) to build many BAI actors.

    Each floating tensor is held as ``[K, width]`` column blocks (base first) in the
    checkpoints' dtype, on the CPU whatever the actor's device (page-locked when that is a
    GPU). Building an actor streams the blocks tensor by tensor to the actor's device and
    combines each block with one fused matmul in float32 (float64 for float32 actors, as on
    disk). Memory: ``K * num_parameters`` times the checkpoint's bytes per parameter.
    """

    def __init__(
        self,
        plan: MergePlan,
        blocks: dict[str, list[torch.Tensor]],
        passthrough: dict[str, torch.Tensor],
        vocab_inputs: dict[str, list[torch.Tensor]],
        config: transformers.PretrainedConfig,
        generation_config: transformers.GenerationConfig | None,
        buffers: dict[str, torch.Tensor],
        device: str,
        trust_remote_code: bool = False,
    ) -> None:
        self.plan = plan
        self.trust_remote_code = trust_remote_code
        self.config = config
        self.generation_config = generation_config
        self.device = device
        self._blocks = blocks
        self._passthrough = passthrough
        self._vocab_inputs = vocab_inputs
        self._buffers = buffers

    def merged_state_dict(
        self,
        weights: Sequence[float],
        alpha: float,
        *,
        dtype: str | torch.dtype | None = None,
        normalize: bool = False,
    ) -> dict[str, torch.Tensor]:
        """The BAI-merged tensors (each a new tensor), bitwise equal to :func:`merge_bai`'s."""
        import torch

        weights, alpha = validate_ratios(weights, alpha, len(self.plan.sfts), normalize=normalize)
        out_dtype = parse_dtype(dtype)
        coefficients = _coefficient_tensors(weights, alpha, self.device)
        vocab = self.plan.vocab
        sources = vocab.source_tensors() if vocab is not None else []
        state: dict[str, torch.Tensor] = {}
        with _single_threaded():
            for output in self.plan.output_tensors(out_dtype):
                if output.name in self._passthrough:
                    state[output.name] = self._passthrough[output.name].to(self.device, copy=True)
                    continue
                if vocab is not None and output.name in self._vocab_inputs:
                    inputs = self._vocab_inputs[output.name]
                    state[output.name] = _combine_vocab_tensor(
                        vocab, coefficients, inputs, sources, output, self.device
                    )
                    continue
                target = getattr(torch, _TORCH_NAMES[output.dtype])
                merged = torch.empty(math.prod(output.shape), dtype=target, device=self.device)
                blocks = (
                    block.to(self.device, non_blocking=True) for block in self._blocks[output.name]
                )
                merged = _combine_blocks(coefficients, blocks, merged, output.dtype)
                state[output.name] = merged.view(output.shape)
        return state

    @property
    def tokenizer(self) -> transformers.PreTrainedTokenizerBase | None:
        """The actor's tokenizer when its vocabulary was matched by token (else None: the
        base's tokenizer fits)."""
        return self.plan.vocab.tokenizer if self.plan.vocab is not None else None

    def build_actor(
        self,
        weights: Sequence[float],
        alpha: float,
        *,
        dtype: str | torch.dtype | None = None,
        normalize: bool = False,
    ) -> transformers.PreTrainedModel:
        """A fresh ``transformers`` causal-LM holding the BAI merge for ``(weights, alpha)``.

        The model is built on the meta device (no random initialisation) and the merged
        tensors are assigned to it; it is in eval mode, like ``from_pretrained`` returns it.

        Raises:
            InvalidRatiosError: Invalid ratios.
        """
        import torch
        from transformers import AutoModelForCausalLM

        state = self.merged_state_dict(weights, alpha, dtype=dtype, normalize=normalize)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(
                self.config, trust_remote_code=self.trust_remote_code
            )
        unexpected = model.load_state_dict(state, strict=False, assign=True).unexpected_keys
        for name, buffer in self._buffers.items():
            module_name, _, leaf = name.rpartition(".")
            model.get_submodule(module_name)._buffers[leaf] = buffer.clone()
        model.tie_weights()
        tensors = [*model.named_parameters(), *model.named_buffers()]
        still_meta = [name for name, tensor in tensors if tensor.device.type == "meta"]
        if unexpected or still_meta:
            raise IncompatibleCheckpointsError(
                f"checkpoint tensors do not fit {self.plan.architecture}: "
                f"unexpected {unexpected[:3]}, not loaded {still_meta[:3]}"
            )
        if self.generation_config is not None:
            model.generation_config = self.generation_config
        return model.eval()


def load_merge_inputs(
    base: str | os.PathLike,
    sfts: Sequence[str | os.PathLike],
    *,
    device: str = "cpu",
    tokenizer_source: str = "base",
    trust_remote_code: bool = False,
) -> MergeInputs:
    """Pre-flight the checkpoints and load them once for :meth:`MergeInputs.build_actor`.

    Args:
        device: Where the actors are built (the inputs themselves stay in host memory).
        tokenizer_source: As for :func:`merge_bai`; the matched tokenizer is
            :attr:`MergeInputs.tokenizer`.

    Raises:
        SweepsError: The same errors as :func:`preflight`, or an unavailable device.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig
    from transformers.initialization import no_init_weights

    plan = preflight(base, sfts, tokenizer_source=tokenizer_source)
    device = _check_device(device)
    # The stacked inputs stay in host memory (page-locked for a GPU, so that each tensor's
    # blocks are copied asynchronously when an actor is built): on the GPU they would take
    # K times the actor's size before any model of the probe exists.
    pin = torch.device(device).type == "cuda"
    blocks: dict[str, list[torch.Tensor]] = {}
    passthrough: dict[str, torch.Tensor] = {}
    vocab_inputs: dict[str, list[torch.Tensor]] = {}
    vocab_names = plan.vocab.tensor_names if plan.vocab is not None else frozenset()
    with TensorReader() as reader:
        for tensor in plan.tensors:
            infos = [layout.tensors[tensor.name] for layout in plan.layouts]
            if tensor.dtype not in FLOAT_DTYPES:
                passthrough[tensor.name] = reader.read(infos[0]).clone()
                continue
            stored = getattr(torch, _TORCH_NAMES[_stack_dtype([info.dtype for info in infos])])
            if tensor.name in vocab_names:
                rows = [reader.read(info).to(stored, copy=True) for info in infos]
                vocab_inputs[tensor.name] = [r.pin_memory() for r in rows] if pin else rows
                continue
            views = [reader.read(info, slot).reshape(-1) for slot, info in enumerate(infos)]
            buffer = torch.empty(len(infos) * BLOCK_ELEMENTS, dtype=stored)
            with _single_threaded():
                copies = [block.clone() for block in _read_blocks(views, buffer)]
            blocks[tensor.name] = [block.pin_memory() for block in copies] if pin else copies
    config = AutoConfig.from_pretrained(plan.base, trust_remote_code=trust_remote_code)
    if plan.vocab is not None:
        config.get_text_config().vocab_size = plan.vocab.rows
    generation_config = None
    if (plan.base / GENERATION_CONFIG_FILE).is_file():
        generation_config = GenerationConfig.from_pretrained(plan.base)
    # Non-persistent buffers (e.g. rotary inv_freq) are not in checkpoints: compute them once
    # on a real (uninitialised) model and reuse them for every actor.
    with no_init_weights():
        template = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    persistent = set(template.state_dict())
    buffers = {
        name: buffer.to(device)
        for name, buffer in template.named_buffers()
        if name not in persistent
    }
    del template
    return MergeInputs(
        plan,
        blocks,
        passthrough,
        vocab_inputs,
        config,
        generation_config,
        buffers,
        device,
        trust_remote_code,
    )


def output_shard_names(plan: MergePlan, dtype: str | None, max_shard_size: str | int) -> list[str]:
    """The shard files :func:`merge_bai` will write for ``plan`` (for dry runs)."""
    shards = plan_shards(plan.output_tensors(parse_dtype(dtype)), parse_size(max_shard_size))
    return shard_file_names(len(shards))
