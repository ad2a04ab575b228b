"""Loading a model: the base half every user of the model shares (the training engine, the server, the commands
that answer), and for answering, the base model or any committed adapter version on top of it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.adapters import AdapterStore
from core.config import Config
from core.device import DevicePlan, plan_device
from core.encoding import wants_chat_template
from core.errors import ModelError
from core.models import load_adapter, load_base_model, load_tokenizer, quiet_transformers, resolve_model_path
from core.state import TrainingState


def resolve_adapter(root: Path, which: str) -> str | None:
    """'base' -> None; 'current' -> the current (served) version (None before any training); 'head' -> the
    version training goes on from; 'v0003' -> itself."""
    if which == "base":
        return None
    state = TrainingState.load(Path(root) / "data" / "state.json")
    version = {"current": state.current_adapter, "head": state.head}.get(which, which)
    if version is not None and not AdapterStore(Path(root) / "data" / "adapters").path(version).is_dir():
        raise ModelError(f"--adapter {which}: no adapter version {version} under {root}/data/adapters")
    return version


@dataclass
class Base:
    """The base model as loaded for `plan`, its tokenizer, and whether prompts go through its chat template."""

    path: Path
    model: object
    tokenizer: object
    use_template: bool
    plan: DevicePlan


def load_base(config: Config, root: Path, plan: DevicePlan | None = None) -> Base:
    """The model named by `model.name_or_path` (resolved under `root`), on the device and precision of `plan`
    (default: planned from training.precision)."""
    quiet_transformers()
    plan = plan or plan_device(config.training.precision)
    path = resolve_model_path(config, Path(root))
    tokenizer = load_tokenizer(path, config)
    model = load_base_model(path, config, plan.device, plan.precision)
    return Base(path, model, tokenizer, wants_chat_template(tokenizer, config.model.use_chat_template), plan)


def load_for_inference(config: Config, root: Path, adapter: str = "current"):
    """(model, tokenizer, use_template, adapter label) ready for generate_answers."""
    base = load_base(config, root)
    model, version = base.model, resolve_adapter(root, adapter)
    if version is not None:
        model = load_adapter(model, Path(root) / "data" / "adapters" / version, model_path=base.path, trainable=False)
    model.eval()
    return model, base.tokenizer, base.use_template, version or "base"


def load_sampling_engine(config: Config, root: Path, adapter: str = "current"):
    """(a sampling engine over the loaded model, the adapter label): what every command that answers needs."""
    from inference.sampling import SamplingEngine

    model, tokenizer, use_template, label = load_for_inference(config, root, adapter)
    return SamplingEngine(model, tokenizer, use_template=use_template), label
