"""Sentence embeddings from a model on this machine (`analysis.embedding_model`), so that failure analysis can
cluster answers by meaning instead of by the words they share. sentence-transformers loads the model: a folder
it saved (modules.json), any Hugging Face model folder (mean pooling; the built-in aliases too), or a name already
in the local Hugging Face cache. Nothing is downloaded at run time."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from core.device import plan_device
from core.errors import ProjectError

Embed = Callable[[list[str]], np.ndarray]


def resolve_embedding_model(name: str | None, config, root: Path) -> str | None:
    """analysis.embedding_model as a loadable name: a built-in alias's folder (materialized once), a folder
    (relative ones under the root), or a name in the local Hugging Face cache. Anything else is refused now,
    before the hours of answering that come before clustering."""
    from huggingface_hub import try_to_load_from_cache

    from core.models import ALIASES, materialize

    if not name:
        return None
    if name in ALIASES:
        cache_dir = Path(config.model.cache_dir)
        return str(materialize(name, cache_dir if cache_dir.is_absolute() else root / cache_dir))
    local = Path(name).expanduser()
    local = local if local.is_absolute() else root / local
    if local.is_dir():
        return str(local)
    try:
        if isinstance(try_to_load_from_cache(name, "config.json"), str):
            return name
    except ValueError:  # not a valid repository id either
        pass
    raise ProjectError(f"analysis.embedding_model: {name!r} is neither a folder ({local} does not exist) nor a "
                       f"model in the local Hugging Face cache; nothing is downloaded at run time: download it "
                       f"once (`hf download {name}`, online) or give its folder, or unset the key to cluster with "
                       f"TF-IDF")


def load_embedder(name: str, *, batch_size: int = 64) -> Embed:
    """A function from texts to unit-length vectors (one row per text)."""
    from sentence_transformers import SentenceTransformer

    device = plan_device().device
    try:
        model = SentenceTransformer(str(Path(name).expanduser()) if Path(name).expanduser().is_dir() else name,
                                    device=device, local_files_only=True)
    except (OSError, ValueError) as e:
        raise ProjectError(
            f"analysis.embedding_model: {name!r} could not be loaded as a sentence-embedding model ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}). Give a folder with the model, or a name already in "
            f"the local Hugging Face cache (`hf download {name}` once, online): nothing is downloaded at run "
            f"time. Unset the key to cluster with TF-IDF.") from e
    tokenizer = model.tokenizer
    if getattr(tokenizer, "pad_token", 1) is None:  # a decoder's tokenizer (no pad token): batches need one
        tokenizer.pad_token = tokenizer.eos_token

    def embed(texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, model.get_sentence_embedding_dimension() or 0), dtype=np.float32)
        return model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                            show_progress_bar=False)

    return embed
