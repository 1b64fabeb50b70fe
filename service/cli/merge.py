"""``bai-sweep merge``: one streamed BAI merge of local checkpoints."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from service.cli._app import app, console, fail, parse_floats, user_errors

if TYPE_CHECKING:
    from sweeps.merge import MergePlan


@app.command()
def merge(
    base: Annotated[Path, typer.Option(help="Pretrained base checkpoint directory.")],
    sft: Annotated[
        list[Path], typer.Option(help="SFT checkpoint directory (repeat for each SFT model).")
    ],
    alpha: Annotated[float, typer.Option(help="Weight of the base model, in [0, 1].")],
    out: Annotated[
        Path | None,
        typer.Option(help="Output directory (must not exist). Required unless --dry-run."),
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(help="Comma-separated SFT weights summing to 1. Default: equal weights."),
    ] = None,
    dtype: Annotated[
        str | None,
        typer.Option(help="Output dtype: bfloat16, float16 or float32. Default: the inputs'."),
    ] = None,
    max_shard_size: Annotated[
        str, typer.Option(help="Largest output shard, e.g. 5GB or 200MB.")
    ] = "5GB",
    device: Annotated[str, typer.Option(help="Device for the arithmetic: cpu or cuda.")] = "cpu",
    tokenizer_from: Annotated[
        Path | None, typer.Option(help="Copy tokenizer files from here instead of the base.")
    ] = None,
    tokenizer_source: Annotated[
        str,
        typer.Option(
            help="Output vocabulary: base, union (the base's tokens plus those the SFT models "
            "added) or the path of one of the inputs; rows are matched by token."
        ),
    ] = "base",
    normalize: Annotated[
        bool, typer.Option("--normalize", help="Rescale the weights to sum to 1.")
    ] = False,
    export_mergekit: Annotated[
        Path | None, typer.Option(help="Also write an equivalent mergekit-multi YAML here.")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace --out if it exists (after success).")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only print the plan and the pre-flight result.")
    ] = False,
) -> None:
    """Merge a base and N SFT checkpoints: alpha * base + (1 - alpha) * sum_i w_i * sft_i."""
    from sweeps import merge as engine

    ratios = parse_floats(weights, "--weights") if weights else [1.0 / len(sft)] * len(sft)
    with user_errors():
        ratios, alpha = engine.validate_ratios(ratios, alpha, len(sft), normalize=normalize)
        out_dtype = engine.parse_dtype(dtype)
        engine.parse_size(max_shard_size)
        if dry_run:
            plan = engine.preflight(base, sft, tokenizer_source=tokenizer_source)
            _print_plan(plan, ratios, alpha, out_dtype, max_shard_size, out)
            return
        if out is None:
            raise fail("--out is required (or pass --dry-run)")
        plan = engine.preflight(base, sft, tokenizer_source=tokenizer_source)
        total = sum(tensor.nbytes for tensor in plan.output_tensors(out_dtype))
        started = time.perf_counter()
        with _progress(total) as advance:
            engine.merge_bai(
                base=base,
                sfts=sft,
                weights=ratios,
                alpha=alpha,
                out=out,
                dtype=out_dtype,
                max_shard_size=max_shard_size,
                device=device,
                tokenizer_from=tokenizer_from,
                tokenizer_source=tokenizer_source,
                export_mergekit=export_mergekit,
                overwrite=overwrite,
                on_tensor=advance,
            )
    elapsed = time.perf_counter() - started
    console.print(
        f"merged {plan.num_parameters:,} parameters into {out} in {elapsed:.1f} s",
        highlight=False,
        soft_wrap=True,
    )


def _print_plan(
    plan: MergePlan,
    ratios: list[float],
    alpha: float,
    out_dtype: str | None,
    max_shard_size: str,
    out: Path | None,
) -> None:
    from sweeps import merge as engine

    coefficients = engine.bai_coefficients(ratios, alpha)
    shards = engine.output_shard_names(plan, out_dtype, max_shard_size)
    lines = [
        *plan.describe(),
        f"weights       {', '.join(f'{w:.6g}' for w in ratios)}",
        f"alpha         {alpha:.6g}",
        f"coefficients  {', '.join(f'{c:.6g}' for c in coefficients)}  (base first)",
        f"output dtype  {out_dtype or 'as inputs'}",
        f"output        {out or '-'} ({len(shards)} shard(s))",
        "pre-flight    OK: checkpoints are compatible",
    ]
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)


@contextmanager
def _progress(total: int) -> Iterator[Callable[[str, int], None]]:
    """A rich progress bar over output bytes; yields the ``on_tensor`` callback."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("merging"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("merge", total=total)
        yield lambda _name, nbytes: bar.advance(task, nbytes)
