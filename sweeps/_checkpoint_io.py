"""Reading and writing Hugging Face safetensors checkpoints, one tensor at a time.

Headers are parsed directly (8-byte length + JSON) so that the pre-flight check needs neither
torch nor the tensor data. Tensors are read with explicit ``pread`` calls into reused buffers
(:class:`TensorReader`) rather than through memory maps: mapped pages stay resident in the
process (its RSS grows by the size of every input) until the map is dropped, whereas bytes read
explicitly live in the page cache, which the kernel reclaims. Output shards are planned up front
from the headers, so each shard's header is written first and every merged tensor goes to disk
as soon as it is computed: memory stays bounded by a few tensors whatever the model size.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from sweeps.exceptions import CheckpointNotFoundError, InvalidCheckpointError

if TYPE_CHECKING:
    import torch

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
CONFIG_FILE = "config.json"
GENERATION_CONFIG_FILE = "generation_config.json"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "spiece.model",
    "chat_template.jinja",
    "chat_template.json",
)

#: Bytes per element of every safetensors dtype.
DTYPE_SIZES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
}
FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16"})
_MAX_HEADER_BYTES = 100_000_000


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives in a checkpoint and what it looks like (from the header only)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    file: Path
    offset: int
    """Absolute byte offset of the tensor's data in ``file``."""

    @property
    def numel(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count

    @property
    def nbytes(self) -> int:
        return self.numel * DTYPE_SIZES.get(self.dtype, 1)


@dataclass(frozen=True)
class CheckpointLayout:
    """A local checkpoint directory: its config and the header of every weight tensor."""

    path: Path
    config: dict
    tensors: dict[str, TensorInfo]
    files: tuple[Path, ...]


def read_safetensors_header(file: Path) -> dict[str, dict]:
    """Return the JSON header of a safetensors file (tensor name -> dtype, shape, offsets).

    Each entry also gets ``"data_start"``: the absolute file offset where the data section begins.
    """
    try:
        with file.open("rb") as handle:
            raw_length = handle.read(8)
            if len(raw_length) != 8:
                raise ValueError("file shorter than 8 bytes")
            (length,) = struct.unpack("<Q", raw_length)
            if length > _MAX_HEADER_BYTES:
                raise ValueError(f"header length {length} is implausible")
            header = json.loads(handle.read(length))
    except (OSError, ValueError) as exc:
        raise InvalidCheckpointError(f"{file} is not a readable safetensors file ({exc})") from None
    if not isinstance(header, dict):
        raise InvalidCheckpointError(f"{file} has a malformed safetensors header")
    header.pop("__metadata__", None)
    for entry in header.values():
        if isinstance(entry, dict):
            entry["data_start"] = 8 + length
    return header


def read_layout(path: Path, label: str) -> CheckpointLayout:
    """Read a checkpoint directory's config and tensor headers; ``label`` names it in errors."""
    if not path.is_dir():
        raise CheckpointNotFoundError(
            f"{label} checkpoint {path} does not exist or is not a directory"
        )
    config_file = path / CONFIG_FILE
    if not config_file.is_file():
        raise CheckpointNotFoundError(f"{label} checkpoint {path} has no {CONFIG_FILE}")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidCheckpointError(
            f"{label} checkpoint {config_file} is unreadable ({exc})"
        ) from None
    files = _weight_files(path, label)
    tensors: dict[str, TensorInfo] = {}
    for file in files:
        header = read_safetensors_header(file)
        for name, entry in header.items():
            try:
                dtype = str(entry["dtype"])
                shape = tuple(int(dim) for dim in entry["shape"])
                offset = int(entry["data_start"]) + int(entry["data_offsets"][0])
            except (KeyError, TypeError, ValueError, IndexError):
                raise InvalidCheckpointError(
                    f"{label} checkpoint {file} has a malformed header entry for tensor {name!r}"
                ) from None
            if name in tensors:
                raise InvalidCheckpointError(
                    f"{label} checkpoint {path} stores tensor {name!r} in two files"
                )
            tensors[name] = TensorInfo(name, dtype, shape, file, offset)
    return CheckpointLayout(path=path, config=config, tensors=tensors, files=files)


def _weight_files(path: Path, label: str) -> tuple[Path, ...]:
    index_file = path / INDEX_FILE
    if index_file.is_file():
        try:
            weight_map = json.loads(index_file.read_text())["weight_map"]
            names = sorted(set(weight_map.values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidCheckpointError(
                f"{label} checkpoint {index_file} is malformed ({exc})"
            ) from None
        files = tuple(path / name for name in names)
        for file in files:
            if not file.is_file():
                raise CheckpointNotFoundError(
                    f"{label} checkpoint {path} is missing shard {file.name} listed in {INDEX_FILE}"
                )
        return files
    if (path / SINGLE_FILE).is_file():
        return (path / SINGLE_FILE,)
    raise CheckpointNotFoundError(
        f"{label} checkpoint {path} has no {SINGLE_FILE} or {INDEX_FILE} "
        "(only safetensors checkpoints are supported)"
    )


#: The content hash recorded for every input file (xxHash3, 128 bits: ~10x faster than SHA-256,
#: so hashing on a second thread stays cheaper than the merge itself).
HASH_ALGORITHM = "xxh3_128"


def hash_file(file: Path, chunk_size: int = 8 << 20) -> str:
    """Hex :data:`HASH_ALGORITHM` digest of a file's bytes."""
    import xxhash

    digest = xxhash.xxh3_128()
    buffer = bytearray(chunk_size)
    view = memoryview(buffer)
    with file.open("rb", buffering=0) as handle:
        while count := handle.readinto(buffer):
            digest.update(view[:count])
    return digest.hexdigest()


_TORCH_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}
_TORCH_DTYPES |= {"I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8"}
_TORCH_DTYPES |= {"BOOL": "bool"}


class TensorReader:
    """Reads checkpoint tensors with ``pread`` into reusable buffers (one buffer per slot).

    ``read(info, slot)`` returns a tensor that aliases slot ``slot``'s buffer: it is valid until
    the same slot is read again. Files are opened once and kept open until :meth:`close`.
    """

    def __init__(self) -> None:
        self._files: dict[Path, int] = {}
        self._buffers: dict[int, torch.Tensor] = {}

    def read(self, info: TensorInfo, slot: int = 0) -> torch.Tensor:
        import torch

        if info.dtype not in _TORCH_DTYPES:
            raise InvalidCheckpointError(f"tensor {info.name!r} has unsupported dtype {info.dtype}")
        nbytes = info.nbytes
        buffer = self._buffers.get(slot)
        if buffer is None or buffer.numel() < nbytes:
            buffer = self._buffers[slot] = torch.empty(nbytes, dtype=torch.uint8)
        data = buffer[:nbytes]
        self._read_into(info, memoryview(cast(Any, data.numpy())))
        return data.view(getattr(torch, _TORCH_DTYPES[info.dtype])).view(info.shape)

    def _read_into(self, info: TensorInfo, target: memoryview) -> None:
        fd = self._files.get(info.file)
        if fd is None:
            fd = self._files[info.file] = os.open(info.file, os.O_RDONLY)
        done = 0
        while done < len(target):
            count = os.preadv(fd, [target[done:]], info.offset + done)
            if count == 0:
                raise InvalidCheckpointError(
                    f"{info.file} ends inside tensor {info.name!r} (truncated checkpoint?)"
                )
            done += count

    def close(self) -> None:
        for fd in self._files.values():
            os.close(fd)
        self._files.clear()
        self._buffers.clear()

    def __enter__(self) -> TensorReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class OutputTensor:
    """One tensor of the output checkpoint: its name, safetensors dtype and shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        count = DTYPE_SIZES[self.dtype]
        for dim in self.shape:
            count *= dim
        return count


def plan_shards(tensors: Iterable[OutputTensor], max_shard_size: int) -> list[list[OutputTensor]]:
    """Split tensors, in order, into shards of at most ``max_shard_size`` bytes.

    A tensor larger than the limit gets a shard of its own (as ``save_pretrained`` does).
    """
    shards: list[list[OutputTensor]] = [[]]
    filled = 0
    for tensor in tensors:
        if shards[-1] and filled + tensor.nbytes > max_shard_size:
            shards.append([])
            filled = 0
        shards[-1].append(tensor)
        filled += tensor.nbytes
    return shards


def shard_file_names(count: int) -> list[str]:
    """The standard Hugging Face names for ``count`` weight shards."""
    if count == 1:
        return [SINGLE_FILE]
    return [f"model-{index:05d}-of-{count:05d}.safetensors" for index in range(1, count + 1)]


class ShardedWriter:
    """Write tensors, in a fixed planned order, straight into pre-planned safetensors shards."""

    def __init__(self, out_dir: Path, tensors: list[OutputTensor], max_shard_size: int) -> None:
        self._out_dir = out_dir
        self._shards = plan_shards(tensors, max_shard_size)
        self._names = shard_file_names(len(self._shards))
        self._order = [
            (index, tensor) for index, shard in enumerate(self._shards) for tensor in shard
        ]
        self._position = 0
        self._handle: BinaryIO | None = None

    @property
    def shard_names(self) -> list[str]:
        return list(self._names)

    def write(self, name: str, tensor: torch.Tensor) -> None:
        """Append the next tensor of the plan; ``tensor`` must already have its output dtype."""
        shard_index, expected = self._order[self._position]
        if name != expected.name or tuple(tensor.shape) != expected.shape:
            raise RuntimeError(
                f"tensor {name!r} written out of plan order (expected {expected.name!r})"
            )
        if self._handle is None:
            self._handle = self._open_shard(shard_index)
        import torch

        data = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
        if data.numel() != expected.nbytes:
            raise RuntimeError(
                f"tensor {name!r} has {data.numel()} bytes, planned {expected.nbytes}"
            )
        self._handle.write(memoryview(cast(Any, data.numpy())))
        self._position += 1
        at_end = self._position == len(self._order)
        if at_end or self._order[self._position][0] != shard_index:
            self._handle.close()
            self._handle = None

    def close(self) -> None:
        """Close an open shard file (after a failure; the caller removes the directory)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def finish(self) -> dict[str, str]:
        """Check every planned tensor was written, write the index if sharded; return the map."""
        if self._position != len(self._order):
            raise RuntimeError("merge ended before every planned tensor was written")
        weight_map = {
            tensor.name: self._names[index]
            for index, shard in enumerate(self._shards)
            for tensor in shard
        }
        if len(self._shards) > 1:
            total = sum(tensor.nbytes for _, tensor in self._order)
            index = {"metadata": {"total_size": total}, "weight_map": weight_map}
            (self._out_dir / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
        return weight_map

    def _open_shard(self, shard_index: int) -> BinaryIO:
        header: dict[str, object] = {"__metadata__": {"format": "pt"}}
        offset = 0
        for tensor in self._shards[shard_index]:
            header[tensor.name] = {
                "dtype": tensor.dtype,
                "shape": list(tensor.shape),
                "data_offsets": [offset, offset + tensor.nbytes],
            }
            offset += tensor.nbytes
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-len(encoded) % 8)
        handle = (self._out_dir / self._names[shard_index]).open("wb")
        handle.write(struct.pack("<Q", len(encoded)))
        handle.write(encoded)
        return handle
