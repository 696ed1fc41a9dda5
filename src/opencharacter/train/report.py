"""What a trained model directory says about itself: a model card and a PNG of the loss curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def plot_losses(history: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    train = [(e["step"], e["loss"]) for e in history if "loss" in e]
    validation = [(e["step"], e["eval_loss"]) for e in history if "eval_loss" in e]
    figure, axis = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        axis.plot(*zip(*train, strict=True), label="training loss", marker=".")
    if validation:
        axis.plot(*zip(*validation, strict=True), label="validation loss (held-out characters)", marker="o")
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("loss (assistant tokens)")
    axis.set_title("opencharacter SFT")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def write_model_card(out: Path, meta: dict[str, Any]) -> Path:
    lora = meta["method"] == "lora"
    lines = [
        "---",
        "library_name: peft" if lora else "library_name: transformers",
        "tags: [role-playing, opencharacter, trl, sft]",
        "---",
        "",
        "# Role-play model trained with opencharacter",
        "",
        f"- base model: `{meta['base_model']}` ({'LoRA adapter' if lora else 'full fine-tune'})",
        f"- data: `{meta['data']}` — {meta['train_examples']} training dialogues, "
        f"{meta['validation_examples']} validation dialogues from held-out characters, "
        f"{meta['truncated']} truncated at max_length",
        f"- system prompt: `{meta['system_prompt_version'] or 'as given in the data'}` "
        "(chat and evaluation render the same template)",
        f"- optimizer steps: {meta['steps']}",
        f"- final training loss: {meta['final_train_loss']}",
        f"- final validation loss: {meta['final_validation_loss']}",
        "",
        "Loss is computed on assistant tokens only. ![loss curves](loss.png)",
        "",
        "## Use",
        "",
        "```bash",
        f"opencharacter chat --model {out} --character 'A retired lighthouse keeper who restores clocks.'",
        "```",
        "",
        "## Training configuration",
        "",
        "```json",
        json.dumps(meta["config"], indent=2),
        "```",
        "",
    ]
    path = out / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
