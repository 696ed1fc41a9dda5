"""A trained model as one GGUF file for llama.cpp, Ollama, KoboldCpp and LM Studio.

The adapter is merged into its base (peft `merge_and_unload`, in float32), then written with the
`gguf` package's `GGUFWriter`: the llama architecture's hyper-parameters, every tensor under its
GGUF name (`gguf`'s own tensor-name map for `MODEL_ARCH.LLAMA`), the tokenizer (tokens, token
types, BPE merges, special ids) and the chat template, so a front end formats the character's
conversation exactly as training did. llama.cpp's own converter is a script in its repository,
not a package; this covers what the tool trains (SmolLM2 is `LlamaForCausalLM`; Llama 2/3,
TinyLlama, Mistral-style llama checkpoints share the layout) and refuses other architectures.

Two encodings: `f16` (2-D weights in half precision, norms in float32) and `q8_0` (2-D weights in
llama.cpp's 8-bit blocks of 32, quantised by `gguf.quants`; norms in float32). Rotary layout: the
HF checkpoint stores q/k rows as two halves, GGUF interleaved, so q and k are permuted as
llama.cpp's converter does (transformers' GGUF reader permutes them back).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Literal

from opencharacter.errors import ConfigError, MissingDependencyError

GgufType = Literal["f16", "q8_0"]
GGUF_TYPES: tuple[str, ...] = ("f16", "q8_0")
SUPPORTED = ("LlamaForCausalLM",)
# llama.cpp picks its pre-tokenizer (how text is split before BPE) by this name; unknown → its default.
_PRE_TOKENIZERS = (("smollm", "smollm"), ("llama-3", "llama-bpe"), ("llama3", "llama-bpe"))


def _gguf() -> Any:
    try:
        import gguf
    except ImportError:
        raise MissingDependencyError("gguf", "local") from None
    return gguf


def merged_model(model_dir: Path) -> tuple[Any, Any, str]:
    """(model with the adapter merged in, tokenizer, base model name) in float32 on the CPU."""
    import torch

    from opencharacter.models.loading import adapter_base, load_model_and_tokenizer

    if not model_dir.is_dir():
        raise ConfigError(f"--model {model_dir}: no such model directory")
    base = adapter_base(str(model_dir))
    model, tokenizer = load_model_and_tokenizer(str(model_dir), "cpu", torch.float32)
    if base is not None:
        model = model.merge_and_unload()
    return model, tokenizer, base or str(model_dir)


def check_architecture(config: Any) -> None:
    architectures = list(getattr(config, "architectures", None) or [])
    if getattr(config, "model_type", None) != "llama" or not set(architectures) <= set(SUPPORTED):
        found = ", ".join(architectures) or getattr(config, "model_type", "unknown")
        raise ConfigError(
            f"GGUF export writes llama-architecture models ({', '.join(SUPPORTED)}: SmolLM2, Llama 2/3, TinyLlama); "
            f"this one is {found}: merge it (`train --merge`) and convert that with llama.cpp's convert_hf_to_gguf.py"
        )
    scaling = getattr(config, "rope_scaling", None) or {}
    kind = scaling.get("rope_type", scaling.get("type", "default")) if isinstance(scaling, dict) else "default"
    if kind not in (None, "default"):
        raise ConfigError(
            f"GGUF export does not write rope scaling '{kind}' (Llama 3.1+ style); use llama.cpp's converter"
        )


def _rope_theta(config: Any) -> float:
    parameters = getattr(config, "rope_parameters", None)
    if isinstance(parameters, dict) and parameters.get("rope_theta") is not None:
        return float(parameters["rope_theta"])
    return float(getattr(config, "rope_theta", 10000.0))


def permute(weights: Any, heads: int, kv_heads: int | None) -> Any:
    """HF's rotary half-split rows → GGUF's interleaved pairs (per head)."""
    if kv_heads is not None and heads != kv_heads:
        heads = kv_heads
    shape = weights.shape
    return weights.reshape(heads, 2, shape[0] // heads // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def _tokenizer_model(tokenizer: Any) -> None:
    """Refuse tokenizers this writer cannot describe: only byte-level BPE (gpt2-style) is written."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    spec = json.loads(backend.to_str()) if backend is not None else {}
    model = (spec.get("model") or {}).get("type")
    pre = json.dumps(spec.get("pre_tokenizer") or {})
    if model != "BPE" or "ByteLevel" not in pre:
        raise ConfigError(
            "GGUF export writes byte-level BPE tokenizers (SmolLM2, Llama 3); this tokenizer is "
            f"{model or 'not a fast tokenizer'}: use llama.cpp's convert_hf_to_gguf.py on a merged model"
        )


def _vocabulary(tokenizer: Any, size: int, gguf: Any) -> tuple[list[str], list[int]]:
    """Token strings (byte-level form) and types, id by id, padded to the model's vocabulary size."""
    vocab = {index: token for token, index in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for index in range(size):
        if index in added:
            tokens.append(added[index].content)
            types.append(gguf.TokenType.CONTROL if added[index].special else gguf.TokenType.USER_DEFINED)
        elif index in vocab:
            tokens.append(vocab[index])
            types.append(gguf.TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
    return tokens, types


def _pre_tokenizer(name: str) -> str:
    lowered = name.lower()
    return next((pre for key, pre in _PRE_TOKENIZERS if key in lowered), "default")


def _write_metadata(writer: Any, gguf: Any, config: Any, name: str, kind: GgufType, license: str | None) -> None:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_name(name)
    writer.add_type(gguf.GGUFType.MODEL)
    if license:
        writer.add_license(license)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads or config.num_attention_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    file_type = gguf.LlamaFileType.MOSTLY_F16 if kind == "f16" else gguf.LlamaFileType.MOSTLY_Q8_0
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _write_tokenizer(writer: Any, gguf: Any, tokenizer: Any, config: Any, base: str) -> None:
    _tokenizer_model(tokenizer)
    tokens, types = _vocabulary(tokenizer, config.vocab_size, gguf)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer(base))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    with tempfile.TemporaryDirectory() as folder:  # SpecialVocab reads the saved tokenizer files
        tokenizer.save_pretrained(folder)
        special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=len(tokens))
    # The template as the tokenizer holds it (older `gguf` releases only look in tokenizer_config.json).
    special.chat_template = getattr(tokenizer, "chat_template", None) or special.chat_template
    special.add_to_gguf(writer, quiet=True)


def _tensor(writer: Any, gguf: Any, name: str, array: Any, kind: GgufType) -> None:
    import numpy as np

    array = np.ascontiguousarray(array, dtype=np.float32)
    if array.ndim == 1:
        writer.add_tensor(name, array)  # norms stay float32, as llama.cpp keeps them
    elif kind == "q8_0" and array.shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0] == 0:
        quantized = gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0)
        writer.add_tensor(name, quantized, raw_shape=quantized.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    else:
        writer.add_tensor(name, array.astype(np.float16))


def _write_tensors(writer: Any, gguf: Any, model: Any, kind: GgufType) -> None:
    config = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    kv_heads = config.num_key_value_heads or config.num_attention_heads
    state = model.state_dict()
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, tensor in state.items():
        if hf_name.endswith("rotary_emb.inv_freq") or (tied and hf_name == "lm_head.weight"):
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ConfigError(f"GGUF export: no GGUF name for the tensor {hf_name!r} of this llama model")
        array = tensor.detach().to("cpu").float().numpy()
        if hf_name.endswith("q_proj.weight"):
            array = permute(array, config.num_attention_heads, config.num_attention_heads)
        elif hf_name.endswith("k_proj.weight"):
            array = permute(array, config.num_attention_heads, kv_heads)
        _tensor(writer, gguf, name, array, kind)


def write_gguf(model: Any, tokenizer: Any, path: Path, kind: GgufType, base: str, license: str | None = None) -> Path:
    """`model` (a merged llama model) and its tokenizer as the GGUF file `path` (written atomically)."""
    gguf = _gguf()
    if kind not in GGUF_TYPES:
        raise ConfigError(f"GGUF type {kind!r}: choose one of {', '.join(GGUF_TYPES)}")
    check_architecture(model.config)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    writer = gguf.GGUFWriter(str(partial), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    try:
        _write_metadata(writer, gguf, model.config, path.stem, kind, license)
        _write_tokenizer(writer, gguf, tokenizer, model.config, base)
        _write_tensors(writer, gguf, model, kind)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        partial.replace(path)
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    return path


def export_gguf(model_dir: Path, kinds: list[GgufType] | None = None, out: Path | None = None) -> list[Path]:
    """`MODEL_DIR/gguf/<name>-<type>.gguf` for each type (default f16); the model card names them."""
    from opencharacter.export.licenses import default_license
    from opencharacter.models.embedded import quiet_transformers
    from opencharacter.train.report import refresh_model_card

    kinds = kinds or ["f16"]
    for kind in kinds:
        if kind not in GGUF_TYPES:
            raise ConfigError(f"--gguf-type {kind!r}: choose one of {', '.join(GGUF_TYPES)}")
    _gguf()
    quiet_transformers()
    from opencharacter.models.loading import model_meta

    meta = model_meta(str(model_dir))
    model, tokenizer, base = merged_model(model_dir)
    check_architecture(model.config)
    base = meta.get("base_model_id") or base  # 'embedded' → the hub id it stands for
    license = meta.get("license") or default_license(base)
    target = out or model_dir / "gguf"
    paths = [
        write_gguf(model, tokenizer, target / f"{model_dir.name}-{kind}.gguf", kind, base, license) for kind in kinds
    ]
    refresh_model_card(model_dir)
    return paths
