"""Merging checkpoints whose vocabularies differ (mergekit's ``tokenizer_source``).

Reasoning distills often add tokens (``<think>``) to their base's vocabulary, so their embedding
and LM-head matrices have more rows than the base's. Rows are matched by token *string*:

- ``base``: the output has the base's vocabulary; a token's row is merged from every model
  that has the token (tokens only some SFT models added are dropped);
- ``union``: the base's vocabulary plus every token another model adds (appended to the
  base's tokenizer as added tokens, in model order, then by id);
- a model's path: that model's vocabulary.

A token's row is ``sum_k c_k E_k[id_k(token)]`` over the models ``k`` that have it, divided by
the sum of their ``c_k``: a token every model has gets exactly the BAI coefficients, a new one
gets the renormalised share of the models that define it (the plain mean of them if all their
coefficients are zero). Rows past the tokenizer's length (padding rows some configs carry) are
merged by index over the models that have that many rows.

The vocabulary tensors are the 2-D tensors whose first dimension is the model's
``vocab_size`` in every checkpoint (input embeddings and untied LM heads); any other shape
difference is refused.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeps._checkpoint_io import TOKENIZER_FILES, CheckpointLayout
from sweeps.exceptions import IncompatibleCheckpointsError, MergeOptionError

if TYPE_CHECKING:
    import torch

#: Rows combined at once (bounds the temporaries of the row-wise combination).
ROW_CHUNK = 1024


@dataclass(frozen=True)
class VocabPlan:
    """How the output vocabulary's rows are taken from each input checkpoint.

    Attributes:
        source: ``"base"``, ``"union"`` or the path of the model whose vocabulary is used.
        rows: Rows of the output vocabulary tensors (the output config's ``vocab_size``).
        tensor_names: The vocabulary tensors (embeddings, untied LM head).
        row_sources: Per input (base first), the input row of each output row (-1: absent).
        added_tokens: Tokens of the output that the base does not have.
        token_sources: For each added token, the inputs that define it (``base``/``sft[i]``).
        tokenizer: The output tokenizer (a ``transformers`` tokenizer).
    """

    source: str
    rows: int
    tensor_names: frozenset[str]
    row_sources: tuple[tuple[int, ...], ...]
    added_tokens: tuple[str, ...]
    token_sources: dict[str, list[str]]
    tokenizer: Any

    def row_weights(self, coefficients: Sequence[float], dtype: torch.dtype) -> torch.Tensor:
        """The ``[rows, K]`` weight of each input in each output row (see the module doc)."""
        import torch

        present = torch.stack([source >= 0 for source in self.source_tensors()], dim=1).double()
        weighted = present * torch.tensor(list(coefficients), dtype=torch.float64)
        total = weighted.sum(dim=1, keepdim=True)
        renormalised = weighted / torch.where(total > 0, total, 1.0)
        mean = present / present.sum(dim=1, keepdim=True)
        return torch.where(total > 0, renormalised, mean).to(dtype)

    def source_tensors(self) -> list[torch.Tensor]:
        """:attr:`row_sources` as one int64 tensor per input."""
        import torch

        return [torch.tensor(sources, dtype=torch.int64) for sources in self.row_sources]

    def recipe(self) -> dict[str, object]:
        """What ``bai_recipe.json`` records about the vocabulary."""
        return {
            "tokenizer_source": self.source,
            "vocab_size": self.rows,
            "added_tokens": list(self.added_tokens),
            "added_token_sources": self.token_sources,
        }


def _labels(count: int) -> list[str]:
    return ["base", *(f"sft[{index}]" for index in range(count - 1))]


def _vocab_size(config: dict) -> int | None:
    value = config.get("vocab_size")
    if value is None and isinstance(config.get("text_config"), dict):
        value = config["text_config"].get("vocab_size")
    return int(value) if isinstance(value, int) else None


def _load_tokenizer(layout: CheckpointLayout, label: str, reason: str) -> Any:
    from transformers import AutoTokenizer

    if not any((layout.path / name).is_file() for name in TOKENIZER_FILES):
        raise IncompatibleCheckpointsError(
            f"{reason}, but {label} {layout.path} has no tokenizer to match tokens by"
        )
    try:
        return AutoTokenizer.from_pretrained(layout.path)
    except (OSError, ValueError) as exc:
        raise IncompatibleCheckpointsError(
            f"cannot load the tokenizer of {label} {layout.path}: {exc}"
        ) from None


def vocab_tensor_names(layouts: Sequence[CheckpointLayout]) -> frozenset[str]:
    """The 2-D tensors whose first dimension is the model's ``vocab_size`` in every input."""
    sizes = [_vocab_size(layout.config) for layout in layouts]
    if any(size is None for size in sizes):
        return frozenset()
    names = set()
    for name in layouts[0].tensors:
        infos = [layout.tensors.get(name) for layout in layouts]
        if (
            all(
                other is not None and len(other.shape) == 2 and other.shape[0] == size
                for other, size in zip(infos, sizes, strict=True)
            )
            and len({other.shape[1] for other in infos if other is not None}) == 1
        ):
            names.add(name)
    return frozenset(names)


def plan_vocab(layouts: Sequence[CheckpointLayout], source: str) -> VocabPlan | None:
    """Match the inputs' vocabularies for ``source``; None when no row mapping is needed.

    No mapping is needed for ``base`` and ``union`` when every input has the same vocabulary
    size and (where tokenizers exist) the same tokens at the same ids.

    Raises:
        MergeOptionError: ``source`` names no input.
        IncompatibleCheckpointsError: Vocabularies differ and a tokenizer is missing, a
            tokenizer has tokens beyond its embedding rows, or no vocabulary tensor exists.
    """
    labels = _labels(len(layouts))
    paths = [layout.path.resolve() for layout in layouts]
    owner = 0
    if source not in ("base", "union"):
        try:
            owner = paths.index(Path(source).expanduser().resolve())
        except ValueError:
            raise MergeOptionError(
                f"tokenizer source {source!r} is neither 'base', 'union' nor one of the merged "
                "checkpoints"
            ) from None
    sizes = [_vocab_size(layout.config) for layout in layouts]
    differ = len(set(sizes)) > 1
    if not differ and source == "base":
        return None
    has_tokenizers = all(
        any((layout.path / name).is_file() for name in TOKENIZER_FILES) for layout in layouts
    )
    if not differ and not has_tokenizers and (source == "union" or owner == 0):
        return None
    reason = (
        f"vocabulary sizes differ ({' vs '.join(map(str, sizes))})"
        if differ
        else f"tokenizer_source {source!r} matches rows by token"
    )
    known_sizes = [size for size in sizes if size is not None]
    if len(known_sizes) != len(sizes):
        raise IncompatibleCheckpointsError(f"{reason}, but a config has no vocab_size")
    tokenizers = [
        _load_tokenizer(layout, label, reason)
        for layout, label in zip(layouts, labels, strict=True)
    ]
    vocabs = [tokenizer.get_vocab() for tokenizer in tokenizers]
    for vocab, size, label, layout in zip(vocabs, known_sizes, labels, layouts, strict=True):
        largest = max(vocab.values(), default=-1)
        if largest >= size:
            raise IncompatibleCheckpointsError(
                f"the tokenizer of {label} {layout.path} has token id {largest} but the model "
                f"has only {size} embedding rows"
            )
    if not differ and all(vocab == vocabs[0] for vocab in vocabs) and source == "union":
        return None
    names = vocab_tensor_names(layouts)
    if not names:
        raise IncompatibleCheckpointsError(
            f"{reason}, but no tensor has vocab_size rows in every checkpoint"
        )
    output, added, token_sources = _output_tokenizer(tokenizers, vocabs, source, owner, labels)
    out_vocab = output.get_vocab()
    by_id = {index: token for token, index in out_vocab.items()}
    n_tokens = max(out_vocab.values()) + 1
    rows = max(n_tokens, known_sizes[owner])
    row_sources = []
    for vocab, size in zip(vocabs, known_sizes, strict=True):
        sources = []
        for row in range(rows):
            token = by_id.get(row)
            if token is not None:
                sources.append(vocab.get(token, -1))
            else:
                sources.append(row if row < size else -1)
        row_sources.append(tuple(sources))
    for row in range(rows):
        if all(sources[row] < 0 for sources in row_sources):
            raise IncompatibleCheckpointsError(
                f"output token {by_id.get(row)!r} (id {row}) is in none of the checkpoints"
            )
    return VocabPlan(
        source=source if source in ("base", "union") else str(paths[owner]),
        rows=rows,
        tensor_names=names,
        row_sources=tuple(row_sources),
        added_tokens=tuple(added),
        token_sources=token_sources,
        tokenizer=output,
    )


def _output_tokenizer(
    tokenizers: Sequence[Any],
    vocabs: Sequence[dict[str, int]],
    source: str,
    owner: int,
    labels: Sequence[str],
) -> tuple[Any, list[str], dict[str, list[str]]]:
    from tokenizers import AddedToken

    base_vocab = vocabs[0]
    if source != "union":
        output = tokenizers[owner]
    else:
        output = copy.deepcopy(tokenizers[0])
        seen = set(base_vocab)
        for tokenizer, vocab in zip(tokenizers[1:], vocabs[1:], strict=True):
            specials = set(tokenizer.all_special_tokens)
            decoder = getattr(tokenizer, "added_tokens_decoder", {})
            special_ids = {index for index, token in decoder.items() if token.special}
            new = [
                token
                for token, index in sorted(vocab.items(), key=lambda item: item[1])
                if token not in seen
            ]
            for token in new:
                special = token in specials or vocab[token] in special_ids
                output.add_tokens([AddedToken(token, special=special, normalized=not special)])
                seen.add(token)
    added = [
        token
        for token, _ in sorted(output.get_vocab().items(), key=lambda item: item[1])
        if token not in base_vocab
    ]
    token_sources = {
        token: [label for label, vocab in zip(labels, vocabs, strict=True) if token in vocab]
        for token in added
    }
    return output, added, token_sources


def combine_rows(
    weights: torch.Tensor,
    inputs: Sequence[torch.Tensor],
    sources: Sequence[torch.Tensor],
    output: torch.Tensor,
) -> torch.Tensor:
    """Write ``output[j] = sum_k weights[j, k] * inputs[k][sources[k][j]]`` chunk by chunk.

    ``weights`` is ``[rows, K]`` in the accumulation dtype; ``sources[k]`` holds each output
    row's input row (-1: absent, contributes nothing). Inputs may be in any floating dtype and
    on the CPU (their rows are copied to the output's device chunk by chunk).
    """
    import torch

    accumulate = weights.dtype
    for start in range(0, output.shape[0], ROW_CHUNK):
        stop = min(start + ROW_CHUNK, output.shape[0])
        total = torch.zeros((stop - start, output.shape[1]), dtype=accumulate, device=output.device)
        for k, (tensor, rows) in enumerate(zip(inputs, sources, strict=True)):
            index = rows[start:stop]
            present = index >= 0
            if not bool(present.any()):
                continue
            picked = tensor.index_select(0, index.clamp(min=0)).to(output.device, accumulate)
            picked = torch.where(present.to(output.device)[:, None], picked, 0)
            total.addcmul_(picked, weights[start:stop, k : k + 1])
        output[start:stop].copy_(total)
    return output
