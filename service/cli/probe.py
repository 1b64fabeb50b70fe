"""``bai-sweep probe``: a short PPO stability probe of one actor checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from service.cli._app import app, console, fail, user_errors

if TYPE_CHECKING:
    from evaluators.probe import ProbeConfig, ProbeResult, StepMetrics
    from evaluators.prompting import PromptSettings

_COLUMNS = (
    ("step", "{:>4d}", "step"),
    ("len", "{:>7.1f}", "length_mean"),
    ("p10", "{:>5.0f}", "length_p10"),
    ("p50", "{:>5.0f}", "length_p50"),
    ("p90", "{:>5.0f}", "length_p90"),
    ("trunc", "{:>6.2f}", "truncated_fraction"),
    ("eos", "{:>5.2f}", "eos_rate"),
    ("reward", "{:>8.3f}", "reward_mean"),
    ("kl", "{:>8.3f}", "kl"),
    ("entropy", "{:>8.3f}", "token_entropy"),
    ("pg_loss", "{:>9.4f}", "policy_loss"),
    ("vf_loss", "{:>9.4f}", "value_loss"),
    ("sec", "{:>6.1f}", "elapsed_seconds"),
)


def _header() -> str:
    widths = [len(fmt.format(0 if name == "step" else 0.0)) for name, fmt, _ in _COLUMNS]
    return " ".join(
        f"{name:>{width}}" for (name, _, _), width in zip(_COLUMNS, widths, strict=True)
    )


def _row(metrics: StepMetrics) -> str:
    return " ".join(fmt.format(getattr(metrics, field)) for _, fmt, field in _COLUMNS)


def _print_summary(result: ProbeResult) -> None:
    stability = result.stability
    console.print(
        f"stop: {result.stop_reason.value}{' (partial)' if result.partial else ''}"
        f"{f' - {result.detail}' if result.detail else ''}",
        highlight=False,
        soft_wrap=True,
    )
    if stability is None:
        return
    recovery = stability.reward_recovery_steps
    lines = [
        f"stability              {stability.stability:.3f}",
        f"length_retention       {stability.length_retention:.3f}",
        f"length_trend           {stability.length_trend:+.3f}",
        f"reward_dip             {stability.reward_dip:.3f}",
        f"reward_recovery_steps  {'never' if recovery is None else recovery}",
        f"kl_max                 {stability.kl_max:.3f}",
        f"kl_final               {stability.kl_final:.3f}",
        f"entropy_drop           {stability.entropy_drop:.3f}",
        f"collapsed              {'yes' if stability.collapsed else 'no'}",
    ]
    for line in lines:
        console.print(line, highlight=False)


def _write_outputs(result: ProbeResult, out: Path, title: str) -> None:
    from evaluators.plots import plot_probe_curves

    out.mkdir(parents=True, exist_ok=True)
    (out / "probe.json").write_text(result.model_dump_json(indent=2))
    figure = plot_probe_curves(result.steps, out / "probe_curves.png", title=title)
    console.print(f"wrote {out / 'probe.json'} and {figure}", highlight=False, soft_wrap=True)


@app.command()
def probe(
    actor: Annotated[Path, typer.Option(help="Actor checkpoint directory (with its tokenizer).")],
    reward: Annotated[
        Path, typer.Option(help="Reward model directory (sequence classification, 1 label).")
    ],
    prompts: Annotated[Path, typer.Option(help='JSONL file of {"prompt": ...} lines.')],
    steps: Annotated[int, typer.Option(min=1, help="PPO updates.")] = 30,
    out: Annotated[
        Path, typer.Option(help="Directory for probe.json and probe_curves.png.")
    ] = Path("probe-output"),
    batch_size: Annotated[int, typer.Option(min=2, help="Prompts per rollout.")] = 8,
    response_length: Annotated[int, typer.Option(min=1, help="Max new tokens.")] = 128,
    learning_rate: Annotated[float, typer.Option(help="Constant learning rate.")] = 3e-6,
    kl_coef: Annotated[float, typer.Option(help="KL penalty coefficient.")] = 0.05,
    seed: Annotated[int, typer.Option(help="Seed (a CPU probe is deterministic).")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    precision: Annotated[
        str,
        typer.Option(
            help="auto (bf16 autocast on a GPU that supports it), bf16 (on any device) or fp32."
        ),
    ] = "auto",
    prompt_format: Annotated[
        str,
        typer.Option(
            help="auto (the chat template when the tokenizer has one), chat or raw; the reward "
            "model scores the same prompts."
        ),
    ] = "auto",
    early_stop: Annotated[
        bool, typer.Option(help="Stop as soon as a length collapse is certain.")
    ] = True,
    trust_remote_code: Annotated[
        bool, typer.Option("--trust-remote-code", help="Allow custom model code.")
    ] = False,
) -> None:
    """Run a short PPO probe on an actor and print its curves and stability summary."""
    from pydantic import ValidationError

    from evaluators.exceptions import EvaluatorError
    from evaluators.probe import ProbeConfig, ProbeDivergedError, run_probe
    from evaluators.prompting import PromptSettings

    try:
        config = ProbeConfig.model_validate(
            {
                "steps": steps,
                "batch_size": batch_size,
                "response_length": response_length,
                "learning_rate": learning_rate,
                "kl_coef": kl_coef,
                "seed": seed,
                "device": device,
                "precision": precision,
                "early_stop": early_stop,
            }
        )
        prompt = PromptSettings.model_validate({"format": prompt_format})
    except ValidationError as error:
        problem = error.errors()[0]
        option = "--" + "-".join(str(part) for part in problem["loc"][:1]).replace("_", "-")
        option = "--prompt-format" if option == "--format" else option
        raise fail(f"{option}: {problem['msg']}") from None
    _preflight(actor, reward, prompts, config, prompt)
    model, tokenizer = _load_actor(actor, trust_remote_code)
    console.print(_header(), highlight=False, soft_wrap=True, style="bold")

    def show(metrics: StepMetrics) -> None:
        console.print(_row(metrics), highlight=False, soft_wrap=True)

    try:
        result = run_probe(
            model,
            tokenizer,
            reward,
            prompts,
            config,
            show,
            prompt=prompt,
            trust_remote_code=trust_remote_code,
        )
    except ProbeDivergedError as error:
        _print_summary(error.result)
        _write_outputs(error.result, out, f"{actor.name}: diverged")
        raise fail(str(error), code=1) from None
    except EvaluatorError as error:
        raise fail(str(error)) from None
    _print_summary(result)
    score = "n/a" if result.stability is None else f"{result.stability.stability:.3f}"
    _write_outputs(result, out, f"{actor.name}: stability {score}")


def _preflight(
    actor: Path, reward: Path, prompts: Path, config: ProbeConfig, prompt: PromptSettings
) -> None:
    """The sweep's pre-flight for one probe: refuse before loading any model."""
    from sweeps import preflight

    with user_errors(preflight.PreflightError):
        facts = preflight.read_actor_facts(actor, "--actor")
        preflight.check_tokenizer(facts, "--actor")
        preflight.check_prompt_format(prompt, actor, "--prompt-format")
        preflight.check_reward_model(reward, facts, "--reward")
        if not prompts.is_file():
            raise preflight.PreflightError(f"--prompts: {str(prompts)!r} is not a file")
        preflight.check_probe(config, facts, prompts, prompts_field="--prompts", flags=True)
        preflight.check_device(config.device, "--device", gpus_per_trial=None, local=True)


def _load_actor(path: Path, trust_remote_code: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (path / "config.json").is_file():
        raise fail(f"actor {path} is not a checkpoint directory")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise fail(f"cannot load actor {path}: {error}") from None
    return model, tokenizer
