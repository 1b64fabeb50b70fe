"""Names outside the shipped suite: lm-eval's built-in index, offline data, unknown names.

Slow: indexing lm-eval's ~14k built-in task names takes ~13 s per runner.
"""

from __future__ import annotations

import pytest
from transformers import PreTrainedTokenizerFast

from evaluators.benchmarks import BenchmarkConfig, BenchmarkRunner
from evaluators.exceptions import TaskDataUnavailableError, UnknownTaskError
from tests.evaluators._bench_support import network_guard
from tests.tiny_models import tiny_tokenizer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture()
def tokenizer() -> PreTrainedTokenizerFast:
    return tiny_tokenizer()


def test_builtin_task_without_local_data_fails_fast_offline(
    tokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = BenchmarkConfig(selection=["arc_easy"], report=[], limit=2, device="cpu")
    with (
        network_guard(monkeypatch) as attempts,
        pytest.raises(TaskDataUnavailableError) as caught,
    ):
        BenchmarkRunner(config, tokenizer)
    assert attempts == []
    message = str(caught.value)
    assert "'arc_easy' is not available on this machine" in message
    assert "nothing is downloaded" in message
    assert "\n" not in message


def test_unknown_task_lists_the_known_ones(tokenizer) -> None:
    config = BenchmarkConfig(selection=["bai_facts_mc"], report=["bai_facts_mcq"], device="cpu")
    with pytest.raises(UnknownTaskError) as caught:
        BenchmarkRunner(config, tokenizer)
    message = str(caught.value)
    assert message.startswith("unknown benchmark task(s): bai_facts_mcq.")
    assert "Did you mean bai_facts_mc" in message
    assert "Known local tasks: bai_arith_gen, bai_arith_long_gen, bai_facts_mc" in message
