"""Loading a model for answering questions: the base model or any committed adapter version."""
from __future__ import annotations

from pathlib import Path

from core.adapters import AdapterStore
from core.config import Config
from core.device import plan_device
from core.encoding import wants_chat_template
from core.errors import ModelError
from core.models import load_adapter, load_base_model, load_tokenizer, quiet_transformers, resolve_model_path
from core.state import TrainingState


def resolve_adapter(root: Path, which: str) -> str | None:
    """'base' -> None; 'current' -> the current version (None before any training); 'v0003' -> itself."""
    if which == "base":
        return None
    state = TrainingState.load(Path(root) / "data" / "state.json")
    version = state.current_adapter if which == "current" else which
    if version is not None and not AdapterStore(Path(root) / "data" / "adapters").path(version).is_dir():
        raise ModelError(f"--adapter {which}: no adapter version {version} under {root}/data/adapters")
    return version


def load_for_inference(config: Config, root: Path, adapter: str = "current"):
    """(model, tokenizer, use_template, adapter label) ready for generate_answers."""
    quiet_transformers()
    plan = plan_device(config.training.precision)
    path = resolve_model_path(config, Path(root))
    tokenizer = load_tokenizer(path, config)
    model = load_base_model(path, config, plan.device, plan.precision)
    version = resolve_adapter(root, adapter)
    if version is not None:
        model = load_adapter(model, Path(root) / "data" / "adapters" / version, model_path=path, trainable=False)
    model.eval()
    return model, tokenizer, wants_chat_template(tokenizer, config.model.use_chat_template), version or "base"
