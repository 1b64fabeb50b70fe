"""``bai-sweep demo``: until the demo world lands, a BAI merge of freshly made tiny checkpoints."""

from __future__ import annotations

import tempfile
from pathlib import Path

from service.cli._app import app, console, user_errors


def _save_tiny_llama(path: Path, seed: int) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).save_pretrained(path)
    return path


@app.command()
def demo() -> None:
    """Make three tiny random Llama checkpoints and BAI-merge them (w = 0.5, 0.5; alpha = 0.3)."""
    import torch
    from transformers import AutoModelForCausalLM

    from sweeps.merge import bai_coefficients, merge_bai, preflight

    with tempfile.TemporaryDirectory(prefix="bai-sweep-demo-") as tmp:
        root = Path(tmp)
        base = _save_tiny_llama(root / "base", seed=0)
        sfts = [_save_tiny_llama(root / f"sft{i}", seed=1 + i) for i in range(2)]
        weights, alpha = [0.5, 0.5], 0.3
        with user_errors():
            plan = preflight(base, sfts)
            for line in plan.describe():
                console.print(line, highlight=False)
            coefficients = ", ".join(f"{c:.3g}" for c in bai_coefficients(weights, alpha))
            console.print(f"coefficients  {coefficients} (base first)", highlight=False)
            out = merge_bai(base=base, sfts=sfts, weights=weights, alpha=alpha, out=root / "bai")
        console.print(f"output        {', '.join(sorted(p.name for p in out.iterdir()))}")
        model = AutoModelForCausalLM.from_pretrained(out)
        tokens = model.generate(torch.tensor([[1, 5, 7]]), max_new_tokens=5, do_sample=False)
        console.print(f"generation    {tokens[0].tolist()}", highlight=False)
