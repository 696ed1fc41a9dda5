"""What a trained model directory says about itself: a model card and a PNG of the loss curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def plot_losses(history: list[dict[str, Any]], path: Path, method: str = "lora") -> Path:
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
    axis.set_ylabel("DPO loss (chosen vs rejected)" if method == "dpo" else "loss (assistant tokens)")
    axis.set_title("opencharacter DPO" if method == "dpo" else "opencharacter SFT")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def write_model_card(out: Path, meta: dict[str, Any]) -> Path:
    lora = meta["method"] in ("lora", "dpo")
    dpo = meta["method"] == "dpo"
    base = meta.get("base_model_id") or meta["base_model"]
    embedded = meta["base_model"] == "embedded"
    lines = [
        "---",
        "library_name: peft" if lora else "library_name: transformers",
        f"base_model: {base}",
        f"tags: [role-playing, opencharacter, trl, {'dpo' if dpo else 'sft'}]",
        "---",
        "",
        "# Role-play model trained with opencharacter",
        "",
        f"- base model: [`{base}`](https://huggingface.co/{base}) ({'LoRA adapter' if lora else 'full fine-tune'})"
        + (
            "; trained on opencharacter's embedded copy of it (Q4_1 GGUF, dequantised to float32), "
            "so outputs on the original weights differ slightly"
            if embedded
            else ""
        ),
        f"- data: `{meta['data']}` — {meta['train_examples']} training {'pairs' if dpo else 'dialogues'}, "
        f"{meta['validation_examples']} validation {'pairs' if dpo else 'dialogues'} from held-out characters, "
        f"{meta['truncated']} truncated at max_length",
        *(
            [
                f"- DPO (sigmoid loss, beta {meta['config']['dpo_beta']}) on best vs worst candidate answers; "
                f"reference model: {meta.get('reference_model')}",
                f"- reward accuracy / margin: training {_rewards(meta, 'train')}, "
                f"held-out characters {_rewards(meta, 'validation')}",
            ]
            if dpo
            else []
        ),
        f"- system prompt: `{meta['system_prompt_version'] or 'as given in the data'}` "
        "(chat and evaluation render the same template)",
        f"- optimizer steps: {meta['steps']}",
        f"- final training loss: {meta['final_train_loss']}",
        f"- final validation loss: {meta['final_validation_loss']}",
        *(
            [f"- peak memory (RSS) while training: {meta['peak_rss_bytes'] / 2**30:.2f} GB"]
            if meta.get("peak_rss_bytes")
            else []
        ),
        "",
        ("DPO loss on the chosen and rejected answers." if dpo else "Loss is computed on assistant tokens only.")
        + " ![loss curves](loss.png)",
        "",
        "## Use",
        "",
        "```bash",
        f"opencharacter chat --model {out} --character 'A retired lighthouse keeper who restores clocks.'",
        "```",
        *(
            [
                "",
                "or with peft alone:",
                "",
                "```python",
                "from peft import AutoPeftModelForCausalLM",
                f"model = AutoPeftModelForCausalLM.from_pretrained('{out.name}')  # loads {base}",
                "```",
            ]
            if lora
            else []
        ),
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


def _rewards(meta: dict[str, Any], split: str) -> str:
    rewards = meta.get("rewards") or {}
    accuracy, margin = rewards.get(f"{split}_accuracy"), rewards.get(f"{split}_margin")
    return "n/a" if accuracy is None else f"{accuracy:.2f} / {margin:.3f}"
