"""``bai-sweep bench``: score a checkpoint on lm-eval benchmark tasks, offline."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from service.cli._app import app, console, fail, user_errors


def _names(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


@app.command()
def bench(
    model: Annotated[Path, typer.Option("--model", help="Checkpoint directory (with tokenizer).")],
    tasks: Annotated[
        str | None,
        typer.Option(help="Comma-separated selection tasks (default: the shipped selection)."),
    ] = None,
    report: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated held-out report tasks (default: the shipped report tasks "
            "not already selected; '' for none)."
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Documents per task.")] = None,
    include_path: Annotated[
        list[Path] | None,
        typer.Option("--include-path", help="Directory of lm-eval task YAMLs (repeatable)."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Requests per forward pass.")] = 32,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda, cuda:N or mps (default: CUDA if available).")
    ] = None,
    max_gen_toks: Annotated[
        int | None, typer.Option(min=1, help="Generation budget of generate_until tasks.")
    ] = None,
    allow_overlap: Annotated[
        bool, typer.Option(help="Allow a task in both selection and report.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of every random generator.")] = 1234,
    prompt_format: Annotated[
        str,
        typer.Option(
            help="auto (the chat template when the tokenizer has one), chat or raw; chat "
            "applies the template to each request (few-shot examples as turns)."
        ),
    ] = "auto",
    trust_remote_code: Annotated[
        bool, typer.Option(help="Let the checkpoint run its own modelling code.")
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON instead of a table.")
    ] = False,
) -> None:
    """Score a checkpoint on the benchmark tasks (shipped suite, user YAMLs or lm-eval's)."""
    from pydantic import ValidationError

    from evaluators.benchmarks import BenchmarkConfig, evaluate_benchmarks, load_checkpoint
    from evaluators.prompting import PromptSettings
    from evaluators.tasks import DEFAULT_REPORT

    selection = _names(tasks)
    report_names = _names(report)
    if report_names is None and selection is not None:
        report_names = [name for name in DEFAULT_REPORT if name not in selection]
    fields: dict[str, object] = {
        "limit": limit,
        "include_path": include_path or [],
        "batch_size": batch_size,
        "device": device,
        "max_gen_toks": max_gen_toks,
        "allow_overlap": allow_overlap,
        "seed": seed,
    }
    if selection is not None:
        fields["selection"] = selection
    if report_names is not None:
        fields["report"] = report_names
    try:
        config = BenchmarkConfig.model_validate(fields)
    except ValidationError as exc:
        messages = "; ".join(error["msg"] for error in exc.errors())
        raise fail(f"invalid benchmark options: {messages}") from None
    try:
        prompt = PromptSettings.model_validate({"format": prompt_format})
    except ValidationError as exc:
        raise fail(f"--prompt-format: {exc.errors()[0]['msg']}") from None

    from sweeps import preflight

    with user_errors(preflight.PreflightError):
        facts = preflight.read_actor_facts(model, "--model")
        preflight.check_prompt_format(prompt, model, "--prompt-format")
        task_files = preflight.check_benchmarks(
            config,
            trust_remote_code=trust_remote_code,
            builtin_tasks=True,
            field="--tasks",
            include_field="--include-path",
        )
        preflight.check_generation_budget(config, facts, task_files, field="--max-gen-toks")
        preflight.check_device(config.device, "--device", gpus_per_trial=None, local=True)
    for name in ("lm_eval", "transformers", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with user_errors():
        loaded, tokenizer = load_checkpoint(
            model, device=config.device, trust_remote_code=trust_remote_code
        )
        result = evaluate_benchmarks(loaded, tokenizer, config, prompt)

    if json_output:
        console.print_json(result.model_dump_json())
        return
    table = Table(title=f"benchmarks of {model}")
    for column in ("task", "role", "metric", "score", "stderr", "n"):
        numeric = column in ("score", "stderr", "n")
        table.add_column(column, justify="right" if numeric else "left", no_wrap=True)
    for task in result.per_task.values():
        metric_name, _, metric_filter = task.metric.partition(",")
        stderr = task.metrics.get(f"{metric_name}_stderr,{metric_filter}")
        table.add_row(
            task.name,
            "+".join(task.roles),
            task.metric,
            f"{task.score:.4f}",
            f"{stderr:.4f}" if stderr is not None else "-",
            str(task.n_samples) if task.n_samples is not None else "-",
        )
    console.print(table)
    console.print(
        f"benchmark (weighted mean of selection tasks): [bold]{result.benchmark:.4f}[/]   "
        f"wall time: {result.wall_time_s:.1f} s"
    )
