"""The pre-flight: everything about a sweep that is decidable before a trial starts.

``POST /sweeps`` (after confining the paths, see ``service.validation``), ``bai-sweep run``,
``bai-sweep probe`` and ``bai-sweep bench`` all call these checks, so a spec that can never run
is refused before anything is queued, created or started. They read configs, tokenizer files,
safetensors headers, shard indexes, prompt files and task YAMLs; they import neither torch,
transformers nor lm-eval, so the API process stays light.

Each refusal is one :class:`PreflightError` line that names the field and the fix.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from evaluators._probe_types import ProbeConfig
from evaluators.benchmarks import BenchmarkConfig
from evaluators.prompting import PromptSettings
from evaluators.tasks import SHIPPED_TASKS, TASKS_DIR
from sweeps.exceptions import InvalidSpecError, SweepsError
from sweeps.spec import SweepSpec

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = [
    "ActorFacts",
    "PreflightError",
    "check_benchmarks",
    "check_checkpoint_dir",
    "check_device",
    "check_generation_budget",
    "check_length_reference",
    "check_probe",
    "check_prompt_format",
    "check_reward_model",
    "check_spec",
    "check_task_files",
    "check_tokenizer",
    "cuda_present",
    "read_actor_facts",
]

_INDEX_FILE = "model.safetensors.index.json"
#: Config keys holding a model's context size, most common first.
_POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length")


class PreflightError(InvalidSpecError):
    """The sweep can never run: the message names the field and the fix."""


@dataclass(frozen=True)
class ActorFacts:
    """What the pre-flight learns about an actor checkpoint from its files."""

    path: Path
    config: dict[str, Any]
    positions: int | None
    """Context size (``max_position_embeddings``); None when the config does not say."""
    vocab_size: int | None
    tokenizer_size: int | None
    """Tokens of ``tokenizer.json`` including added ones; None without a fast tokenizer."""
    has_eos: bool | None
    """Whether the tokenizer defines an EOS token; None when no tokenizer file says."""


# --------------------------------------------------------------------------- checkpoints


def _read_json(path: Path, field: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PreflightError(f"{field}: cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise PreflightError(f"{field}: {path} is not a JSON object")
    return data


def check_checkpoint_dir(path: Path, field: str) -> dict[str, Any]:
    """Require a local checkpoint directory whose shard index stays inside it; its config.

    Every shard file named by ``model.safetensors.index.json`` must resolve (symlinks and
    ``..`` followed) inside the checkpoint directory: a crafted index must not make a worker
    read files elsewhere.
    """
    if not path.is_dir():
        problem = "is not a directory" if path.exists() else "does not exist"
        raise PreflightError(
            f"{field}: {str(path)!r} {problem}; give the path of a local checkpoint "
            "directory (nothing is downloaded from a hub)"
        )
    if not (path / "config.json").is_file():
        raise PreflightError(
            f"{field}: {path} is not a checkpoint directory (no config.json); give a saved model"
        )
    index = path / _INDEX_FILE
    if index.is_file():
        root = path.resolve()
        weight_map = _read_json(index, field).get("weight_map")
        if not isinstance(weight_map, dict):
            raise PreflightError(f"{field}: {index} has no weight_map object")
        for shard in sorted({str(name) for name in weight_map.values()}):
            if not (root / shard).resolve().is_relative_to(root):
                raise PreflightError(
                    f"{field}: {index} names shard {shard!r} outside the checkpoint directory; "
                    "shard names must be plain file names inside it"
                )
    return _read_json(path / "config.json", field)


def _positions(config: dict[str, Any]) -> int | None:
    for key in _POSITION_KEYS:
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _fast_tokenizer(path: Path, field: str) -> Tokenizer | None:
    """The checkpoint's ``tokenizer.json`` (None without one)."""
    tokenizer_file = path / "tokenizer.json"
    if not tokenizer_file.is_file():
        return None
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(tokenizer_file))
    except Exception as exc:  # the Rust library raises its own exception type
        raise PreflightError(f"{field}: cannot read {tokenizer_file}: {exc}") from None


def _tokenizer_facts(path: Path, field: str) -> tuple[int | None, bool | None]:
    """(tokens in tokenizer.json with added tokens, EOS defined) of a checkpoint's tokenizer."""
    tokenizer = _fast_tokenizer(path, field)
    size = None if tokenizer is None else tokenizer.get_vocab_size(with_added_tokens=True)
    has_eos = None
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        file = path / name
        if file.is_file():
            eos = _read_json(file, field).get("eos_token")
            has_eos = bool(eos) or bool(has_eos)
    return size, has_eos


def read_actor_facts(path: Path, field: str) -> ActorFacts:
    """Read the actor's context size, vocabulary and tokenizer from its files."""
    config = check_checkpoint_dir(path, field)
    vocab = config.get("vocab_size")
    size, has_eos = _tokenizer_facts(path, field)
    return ActorFacts(
        path=path,
        config=config,
        positions=_positions(config),
        vocab_size=vocab if isinstance(vocab, int) else None,
        tokenizer_size=size,
        has_eos=has_eos,
    )


def check_tokenizer(actor: ActorFacts, field: str) -> None:
    """The tokenizer must end responses (EOS) and fit the model's embedding rows."""
    if actor.has_eos is False:
        raise PreflightError(
            f"{field}: the tokenizer in {actor.path} has no EOS token, so no response could "
            "ever end; set eos_token in its tokenizer_config.json"
        )
    if (
        actor.tokenizer_size is not None
        and actor.vocab_size is not None
        and actor.tokenizer_size > actor.vocab_size
    ):
        raise PreflightError(
            f"{field}: the tokenizer in {actor.path} has {actor.tokenizer_size} tokens but the "
            f"model only {actor.vocab_size} embedding rows; resize the embeddings or use the "
            "model's own tokenizer"
        )


def _has_chat_template(path: Path) -> bool:
    if (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file():
        return True
    try:
        config = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(config, dict) and bool(config.get("chat_template"))


def check_prompt_format(prompt: PromptSettings, path: Path, field: str) -> None:
    """A ``chat`` prompt format needs a chat template in the tokenizer's files."""
    if prompt.format == "chat" and not _has_chat_template(path):
        raise PreflightError(
            f"{field}: 'chat' needs a tokenizer with a chat template and {path} has none; use "
            "auto or raw"
        )


def check_reward_model(path: Path, actor: ActorFacts, field: str) -> None:
    """A reward model PPO can use: one-label sequence classification over the actor's tokens."""
    config = check_checkpoint_dir(path, field)
    architectures = config.get("architectures") or []
    if not any(str(name).endswith("ForSequenceClassification") for name in architectures):
        found = ", ".join(map(str, architectures)) or "none"
        raise PreflightError(
            f"{field}: {path} is not a sequence-classification model (architectures: {found}); "
            "PPO needs a reward model with a one-label score head, e.g. "
            "LlamaForSequenceClassification with num_labels=1"
        )
    id2label = config.get("id2label")
    labels = config.get("num_labels", len(id2label) if isinstance(id2label, dict) else 1)
    if labels != 1:
        raise PreflightError(
            f"{field}: {path} has {labels} labels; the reward head must have exactly one "
            "(num_labels=1)"
        )
    vocab = config.get("vocab_size")
    needed = actor.tokenizer_size or actor.vocab_size
    if isinstance(vocab, int) and needed is not None and vocab < needed:
        raise PreflightError(
            f"{field}: {path} has {vocab} embedding rows but the actor's tokens go up to "
            f"{needed}; the reward model must share the actor's vocabulary"
        )


# --------------------------------------------------------------------------- probe


def cuda_present() -> bool:
    """Whether this machine has an NVIDIA driver (without importing torch)."""
    return Path("/proc/driver/nvidia/version").is_file() or Path("/dev/nvidia0").exists()


def check_device(
    device: str | None, field: str, *, gpus_per_trial: float | None, local: bool
) -> None:
    """A CUDA device must exist where the work runs.

    Args:
        gpus_per_trial: The trials' Ray GPU share (None outside Ray): Ray hides every GPU
            from a trial that asked for none.
        local: The work runs on this machine, so its devices decide.
    """
    if device is None or not device.startswith("cuda"):
        return
    if gpus_per_trial is not None and gpus_per_trial <= 0:
        raise PreflightError(
            f"{field}: {device!r} needs resources.gpus_per_trial > 0 (Ray hides GPUs from "
            "trials that ask for none); set gpus_per_trial, or device: auto"
        )
    if local and not cuda_present():
        raise PreflightError(
            f"{field}: {device!r} requested but this machine has no CUDA device; use auto or cpu"
        )


def _prompt_lengths(path: Path, texts: Sequence[str]) -> list[int] | None:
    tokenizer = _fast_tokenizer(path, "tokenizer")
    if tokenizer is None:
        return None
    return [len(encoding.ids) for encoding in tokenizer.encode_batch(list(texts))]


def check_probe(
    config: ProbeConfig,
    actor: ActorFacts,
    prompts: Path,
    *,
    prompts_field: str = "models.prompts",
    has_reward_model: bool = True,
    flags: bool = False,
) -> None:
    """Prompts, batch, response budget and backend of a probe, checked against the actor.

    The prompt lengths come from the actor's ``tokenizer.json`` encoded with its special
    tokens, as the probe encodes them; without a fast tokenizer that check is left to the probe.

    Args:
        flags: Name the fields as command-line options (``--batch-size``), not spec fields.
    """

    def name(key: str) -> str:
        return f"--{key.replace('_', '-')}" if flags else f"probe.{key}"

    from evaluators.backends import backend_names
    from evaluators.exceptions import EvaluatorError
    from evaluators.probe import load_prompts

    if config.backend not in backend_names():
        raise PreflightError(
            f"{name('backend')}: unknown backend {config.backend!r}; use one of "
            f"{', '.join(backend_names())}"
        )
    if config.value_model == "reward" and not has_reward_model:
        raise PreflightError(
            f"{name('value_model')}: 'reward' needs models.reward (a reward model, not a rule); "
            "use auto or actor"
        )
    try:
        texts = load_prompts(prompts)
    except EvaluatorError as exc:
        raise PreflightError(f"{prompts_field}: {exc}") from None
    if len(texts) < config.batch_size:
        raise PreflightError(
            f"{name('batch_size')}: {config.batch_size} is more than the {len(texts)} prompts of "
            f"{prompts_field}; set batch_size <= {len(texts)} or add prompts"
        )
    lengths = _prompt_lengths(actor.path, texts)
    if lengths is not None and actor.positions is not None:
        longest = max(lengths)
        if longest + config.response_length > actor.positions:
            room = actor.positions - longest
            fix = f"set {name('response_length')} <= {room}" if room > 0 else "shorten the prompts"
            raise PreflightError(
                f"{name('response_length')}: the longest prompt ({longest} tokens) plus "
                f"response_length ({config.response_length}) exceed the actor's "
                f"{actor.positions} positions; {fix}"
            )


# --------------------------------------------------------------------------- benchmarks


class _TaskYamlLoader(yaml.SafeLoader):
    """Reads lm-eval task YAMLs, recording (not running) their ``!function`` tags."""


def _record_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> str:
    return f"!{suffix}"


_TaskYamlLoader.add_multi_constructor("!", _record_tag)


def _tags(value: Any) -> Iterable[str]:
    if isinstance(value, str) and value.startswith("!"):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tags(item)
    elif isinstance(value, list):
        for item in value:
            yield from _tags(item)


#: A task's YAML file and its parsed contents (tags recorded, not run).
TaskFile = tuple[Path, dict[str, Any]]


def check_task_files(
    include_paths: Sequence[Path], *, trust_remote_code: bool, field: str
) -> dict[str, TaskFile]:
    """Parse the task YAMLs under ``include_paths``; the task and group names they define,
    with the file defining each.

    A YAML that runs Python (``!function`` hooks, a ``class`` or a ``.py`` dataset script) is
    refused unless ``trust_remote_code`` is on: the worker would execute it.
    """
    names: dict[str, TaskFile] = {}
    for index, root in enumerate(include_paths):
        where = f"{field}[{index}]"
        if not root.is_dir():
            raise PreflightError(f"{where}: {str(root)!r} is not a directory of task YAMLs")
        for path in sorted(root.glob("**/*.yaml")):
            try:
                config: Any = yaml.load(path.read_text(encoding="utf-8"), _TaskYamlLoader)
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
                reason = " ".join(str(exc).split())
                raise PreflightError(f"{where}: task file {path} is malformed: {reason}") from None
            if not isinstance(config, dict):
                continue
            if not trust_remote_code:
                hooks = sorted(set(_tags(config)))
                dataset = str(config.get("dataset_path", ""))
                if hooks or "class" in config or dataset.endswith(".py"):
                    what = ", ".join(hooks) or "a Python class or dataset script"
                    raise PreflightError(
                        f"{where}: task file {path} runs Python code ({what}); remove it, or "
                        "enable trust_remote_code if you trust this code"
                    )
            for key in ("task", "group"):
                if isinstance(config.get(key), str):
                    names[config[key]] = (path, config)
    return names


@lru_cache(maxsize=1)
def _builtin_task_names() -> frozenset[str]:
    """Names lm-eval's built-in task YAMLs define, read as text (no lm-eval import)."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    tasks_dir = Path(next(iter(spec.submodule_search_locations))) / "tasks"
    pattern = re.compile(r"^(?:task|group|tag)\s*:\s*['\"]?([\w.\-]+)", re.MULTILINE)
    names: set[str] = set()
    for path in tasks_dir.glob("**/*.yaml"):
        try:
            names.update(pattern.findall(path.read_text(encoding="utf-8", errors="replace")))
        except OSError:
            continue
    return frozenset(names)


def _shipped_task_files() -> dict[str, TaskFile]:
    files = {}
    for name in SHIPPED_TASKS:
        path = TASKS_DIR / f"{name}.yaml"
        files[name] = (path, yaml.load(path.read_text(encoding="utf-8"), _TaskYamlLoader))
    return files


def check_benchmarks(
    config: BenchmarkConfig,
    *,
    trust_remote_code: bool,
    builtin_tasks: bool,
    field: str = "benchmarks",
    include_field: str = "benchmarks.include_path",
) -> dict[str, TaskFile]:
    """The task YAMLs are safe and every task name resolves.

    Args:
        builtin_tasks: Also accept lm-eval's built-in task names (the CLI; the service only
            accepts the shipped tasks and those under ``include_path``).

    Returns:
        The file of each shipped task and of each task defined under ``include_path``.
    """
    paths = [Path(p).expanduser().resolve() for p in config.include_path]
    files = _shipped_task_files() | check_task_files(
        paths, trust_remote_code=trust_remote_code, field=include_field
    )
    known = set(files)
    unknown = [name for name in config.task_names if name not in known]
    if unknown and builtin_tasks:
        unknown = [name for name in unknown if name not in _builtin_task_names()]
    if unknown:
        scope = "" if builtin_tasks else " (the service does not run lm-eval's built-in tasks)"
        raise PreflightError(
            f"{field}: unknown task(s) {', '.join(unknown)}{scope}; use one of "
            f"{', '.join(sorted(known))} or define it under {include_field}"
        )
    return files


#: lm-eval's generation budget of a ``generate_until`` task that does not set one.
DEFAULT_MAX_GEN_TOKS = 256
_FIELD_TEMPLATE = re.compile(r"^\{\{\s*(\w+)\s*\}\}$")


def _task_prompts(path: Path, task: dict[str, Any], limit: int | None) -> list[str] | None:
    """The prompts of a task whose documents are local JSON lines rendered by a one-field
    template without few-shot examples (the shipped tasks); None for any other task."""
    template = _FIELD_TEMPLATE.match(str(task.get("doc_to_text", "")))
    files = (task.get("dataset_kwargs") or {}).get("data_files")
    if isinstance(files, dict):
        files = files.get(task.get("test_split", "test"))
    if task.get("dataset_path") != "json" or not template or not isinstance(files, str):
        return None
    if task.get("num_fewshot") or task.get("description"):
        return None
    data = Path(files) if Path(files).is_absolute() else path.parent / files
    prompts = []
    try:
        with data.open(encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    prompts.append(str(json.loads(line).get(template.group(1), "")))
                if limit is not None and len(prompts) >= limit:
                    break
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None  # lm-eval reports a broken data file when the trial loads it
    return prompts


def check_generation_budget(
    config: BenchmarkConfig,
    actor: ActorFacts,
    tasks: dict[str, TaskFile],
    *,
    field: str = "benchmarks.max_gen_toks",
) -> None:
    """Each generating task's longest prompt plus its generation budget fit the actor.

    The budget is ``max_gen_toks`` of the config, else of the task's YAML, else lm-eval's
    default (256). Prompts are counted with the actor's ``tokenizer.json`` where the task's
    documents are local (see :func:`_task_prompts`); otherwise the budget alone must fit.
    lm-eval's built-in tasks (not in ``tasks``) are checked when the trial loads them.
    """
    if actor.positions is None:
        return
    tokenizer = _fast_tokenizer(actor.path, "models.base")
    for name in config.task_names:
        if name not in tasks:
            continue
        path, task = tasks[name]
        if task.get("output_type") != "generate_until":
            continue
        generation = task.get("generation_kwargs") or {}
        budget = config.max_gen_toks or int(generation.get("max_gen_toks", DEFAULT_MAX_GEN_TOKS))
        longest = 0
        prompts = _task_prompts(path, task, config.limit) if tokenizer is not None else None
        if tokenizer is not None and prompts:
            longest = max(len(e.ids) for e in tokenizer.encode_batch(prompts))
        if longest + budget > actor.positions or budget >= actor.positions:
            room = actor.positions - max(longest, 1)
            fix = f"set {field} <= {room}" if room > 0 else "use a model with more positions"
            raise PreflightError(
                f"{field}: task {name!r} generates up to {budget} tokens after prompts of up to "
                f"{longest} tokens, more than the actor's {actor.positions} positions; {fix}"
            )


# --------------------------------------------------------------------------- the spec


def check_length_reference(probe: ProbeConfig, actor: ActorFacts) -> None:
    """A reference model named by ``probe.length_reference``: a generating checkpoint whose
    tokenizer is the actor's, so its greedy lengths count the same tokens (issue 12)."""
    reference = probe.reference_model
    if reference is None:
        return
    field = "probe.length_reference"
    path = Path(reference)
    config = check_checkpoint_dir(path, field)
    architectures = [str(name) for name in config.get("architectures") or []]
    if any(name.endswith("ForSequenceClassification") for name in architectures):
        raise PreflightError(
            f"{field}: {path} is a sequence-classification model; the reference must generate "
            "(a causal LM), or use 'parents' or 'initial'"
        )
    theirs = _fast_tokenizer(path, field)
    ours = _fast_tokenizer(actor.path, "models.base")
    if theirs is None or (
        ours is not None
        and theirs.get_vocab(with_added_tokens=True) != ours.get_vocab(with_added_tokens=True)
    ):
        problem = "has no tokenizer.json" if theirs is None else "has another tokenizer"
        raise PreflightError(
            f"{field}: {path} {problem} than models.base; the reference must share the "
            "actor's tokenizer so that its lengths count the same tokens"
        )
    positions = _positions(config)
    if positions is not None and probe.response_length >= positions:
        raise PreflightError(
            f"{field}: {path} has {positions} positions, too few to generate "
            f"probe.response_length={probe.response_length} tokens after a prompt"
        )


def check_spec(
    spec: SweepSpec,
    *,
    trust_remote_code: bool = False,
    local_devices: bool = True,
    builtin_tasks: bool = True,
) -> None:
    """Everything about ``spec`` decidable before a trial starts (paths must be resolved).

    Args:
        trust_remote_code: Allow task YAMLs that run Python.
        local_devices: The trials run on this machine, so a CUDA device must be here.
        builtin_tasks: Accept lm-eval's built-in task names.

    Raises:
        PreflightError: One line naming the field and the fix.
    """
    from sweeps.merge import preflight as merge_preflight

    models = spec.models
    base = Path(models.base)
    actor = read_actor_facts(base, "models.base")
    sfts = [Path(path) for path in models.sft]
    for index, path in enumerate(sfts):
        check_checkpoint_dir(path, f"models.sft[{index}]")
    try:
        merge_preflight(base, sfts, tokenizer_source=models.tokenizer_source)
    except SweepsError as exc:
        raise PreflightError(f"models: {exc}") from None
    check_tokenizer(actor, "models.base")
    check_prompt_format(spec.prompt, base, "prompt.format")
    if models.reward is not None:
        check_reward_model(Path(models.reward), actor, "models.reward")
    prompts = Path(models.prompts)
    if not prompts.is_file():
        raise PreflightError(f"models.prompts: {models.prompts!r} is not a file")
    check_probe(spec.probe, actor, prompts, has_reward_model=models.reward is not None)
    check_length_reference(spec.probe, actor)
    gpus = spec.resources.gpus_per_trial
    check_device(spec.probe.device, "probe.device", gpus_per_trial=gpus, local=local_devices)
    check_device(
        spec.benchmarks.device, "benchmarks.device", gpus_per_trial=gpus, local=local_devices
    )
    tasks = check_benchmarks(
        spec.benchmarks, trust_remote_code=trust_remote_code, builtin_tasks=builtin_tasks
    )
    check_generation_budget(spec.benchmarks, actor, tasks)
