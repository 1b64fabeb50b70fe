"""The demo world's word-level tokenizer, built with the ``tokenizers`` library."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from evaluators.task_family import vocabulary_words

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)
# Wide enough for every value a (wrong) model may write, not just the problems' 0..99.
NUMBER_RANGE = range(-99, 200)
#: Positions of the world's models: the longest prompt (16 tokens) plus 256 response tokens fit.
MAX_POSITIONS = 384
# Filler text: the base model's "web text" around the task.
FILLER_SUBJECTS = ("the cat", "the dog", "a bird", "the farmer", "a child", "the teacher", "we")
FILLER_VERBS = ("sees", "likes", "finds", "takes", "has", "wants", "counts")
FILLER_OBJECTS = (
    "the red ball",
    "a big tree",
    "the old house",
    "some apples",
    "the small river",
    "a green box",
    "many stones",
)
FILLER_TAILS = ("", "in the morning", "at night", "and then it rains", "every day", "near the sea")


def vocabulary() -> list[str]:
    """Every token of the world, specials first (``<pad>`` has id 0)."""
    words: list[str] = [*SPECIAL_TOKENS]
    words += [str(n) for n in NUMBER_RANGE]
    words += vocabulary_words()
    for phrase in (*FILLER_SUBJECTS, *FILLER_VERBS, *FILLER_OBJECTS, *FILLER_TAILS):
        words += phrase.split()
    return list(dict.fromkeys(words))


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level fast tokenizer: whitespace split, ``<bos>`` prepended, left padding."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(vocabulary())}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        padding_side="left",
        model_max_length=MAX_POSITIONS,
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, directory: Path) -> None:
    """Save ``tokenizer`` as a standard Hugging Face tokenizer into ``directory``."""
    tokenizer.save_pretrained(directory)
