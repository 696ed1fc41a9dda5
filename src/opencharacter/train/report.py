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


def _run_sources(data: str) -> list[str]:
    """Hub datasets a run's card names as its sources (a run made from the paper's release names it)."""
    card = Path(data) / "README.md"
    if not card.is_file():
        return []
    try:
        from huggingface_hub import DatasetCard

        sources = DatasetCard.load(card).data.source_datasets or []
    except (ImportError, ValueError, OSError):
        return []
    return [s for s in sources if isinstance(s, str)]


def model_card_data(meta: dict[str, Any], license: str | None = None) -> Any:
    """The card's metadata: what the Hub shows and filters by. `base_model` only ever names a Hub id."""
    from huggingface_hub import ModelCardData

    from opencharacter.export.licenses import default_license
    from opencharacter.export.shareable import hub_id_or_none

    base = meta.get("base_model_id") or meta["base_model"]
    lora = meta["method"] in ("lora", "dpo", "grpo")
    data = str(meta.get("data") or "")
    datasets = sorted({*([data] if hub_id_or_none(data) else []), *_run_sources(data)})
    return ModelCardData(
        base_model=hub_id_or_none(base),
        library_name="peft" if lora else "transformers",
        license=license or meta.get("license") or default_license(base),
        datasets=datasets or None,
        language=["en"],
        pipeline_tag="text-generation",
        tags=["role-playing", "opencharacter", "trl", meta["method"] if meta["method"] in ("dpo", "grpo") else "sft"],
    )


def write_model_card(out: Path, meta: dict[str, Any], license: str | None = None) -> Path:
    """`out/README.md`: a Hugging Face model card (huggingface_hub's ModelCardData) with no local path in it."""
    from opencharacter.export.shareable import hub_id_or_none, shareable

    lora = meta["method"] in ("lora", "dpo", "grpo")
    dpo = meta["method"] == "dpo"
    base = meta.get("base_model_id") or meta["base_model"]
    base_id = hub_id_or_none(base)
    embedded = meta["base_model"] == "embedded"
    base_line = (
        f"[`{base_id}`](https://huggingface.co/{base_id})" if base_id else f"a local model (`{shareable(base)}`)"
    )
    ggufs = sorted(p.relative_to(out).as_posix() for p in out.glob("**/*.gguf"))
    lines = [
        "# Role-play model trained with opencharacter",
        "",
        f"- base model: {base_line} ({'LoRA adapter' if lora else 'full fine-tune'})"
        + (
            "; trained on opencharacter's embedded copy of it (Q4_1 GGUF, dequantised to float32), "
            "so outputs on the original weights differ slightly"
            if embedded
            else ""
        ),
        f"- data: `{shareable(str(meta['data']))}` — "
        f"{meta['train_examples']} training {'pairs' if dpo else 'dialogues'}, "
        f"{meta['validation_examples']} validation {'pairs' if dpo else 'dialogues'} from held-out characters, "
        f"{meta['truncated']} truncated at max_length",
        *(
            [
                f"- DPO (sigmoid loss, beta {meta['config']['dpo_beta']}) on best vs worst candidate answers; "
                f"reference model: {_reference(meta.get('reference_model'))}",
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
        f"opencharacter chat --model {out.name} --character 'A retired lighthouse keeper who restores clocks.'",
        "```",
        *(
            [
                "",
                "or with peft alone:",
                "",
                "```python",
                "from peft import AutoPeftModelForCausalLM",
                f"model = AutoPeftModelForCausalLM.from_pretrained('{out.name}')  # loads {base_id or 'its base'}",
                "```",
            ]
            if lora
            else []
        ),
        *(
            [
                "",
                "### llama.cpp, Ollama, KoboldCpp, LM Studio",
                "",
                "The adapter merged into its base, as GGUF (tokenizer and chat template inside):",
                "",
                *(f"- `{name}`" for name in ggufs),
                "",
                "```bash",
                f"llama-server -m {ggufs[0]} --jinja   # OpenAI-compatible API on :8080",
                "```",
            ]
            if ggufs
            else []
        ),
        "",
        "## Training configuration",
        "",
        "```json",
        json.dumps(shareable(meta["config"]), indent=2),
        "```",
        "",
    ]
    text = "\n".join(["---", model_card_data(meta, license).to_yaml(), "---", "", *lines])
    path = out / "README.md"
    path.write_text(text, encoding="utf-8")
    return path


def refresh_model_card(out: Path, license: str | None = None) -> Path | None:
    """Rewrite the card of a trained model directory from its `opencharacter.json` (after a GGUF
    export, or with a license chosen at push time, which is kept there for later rewrites)."""
    from opencharacter.models.loading import MODEL_META

    meta_path = out / MODEL_META
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if license and meta.get("license") != license:
        meta["license"] = license
        meta_path.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return write_model_card(out, meta)


def _reference(reference: Any) -> str:
    """`SFT adapter /abs/path/m1` (what dpo.py records) → `SFT adapter …/m1`."""
    from opencharacter.export.shareable import shareable_text

    text = str(reference)
    prefix = "SFT adapter "
    return prefix + shareable_text(text[len(prefix) :]) if text.startswith(prefix) else shareable_text(text)


def _rewards(meta: dict[str, Any], split: str) -> str:
    rewards = meta.get("rewards") or {}
    accuracy, margin = rewards.get(f"{split}_accuracy"), rewards.get(f"{split}_margin")
    return "n/a" if accuracy is None else f"{accuracy:.2f} / {margin:.3f}"
