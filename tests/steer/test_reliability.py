"""Issue 13 (steer): steers that cannot steer, crash-safe saves, actionable errors, CLI safety."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from steer import (
    BaseModelMismatchError,
    LabelRangeError,
    SteerConfig,
    SteerFormatError,
    SteerInputError,
    SteerTrainConfig,
    attach,
    decode,
    fit_steer,
    generate,
    load_steer,
    save_steer,
    steering,
)
from steer.cli import app
from steer.core.compat import FINGERPRINT_KEY, rebase
from tests.steer import _tiny
from tests.steer.conftest import random_transform

TEXTS = ["the film was good", "a movie was bad", "the story is nice", "the plot was dull"]
SC = SteerConfig(num_steers=1, rank=4, epsilon=1e-2)
TC = SteerTrainConfig(steps=2, batch_size=2, progress=False)


@pytest.fixture(scope="module")
def fitted() -> Any:
    return fit_steer(_tiny.model("gpt2"), _tiny.tokenizer(), TEXTS, [1.0, -1.0, 1.0, -1.0], SC, TC)


def _edit(folder: Path, **fields: Any) -> Path:
    cfg_path = folder / "steer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(fields)
    cfg_path.write_text(json.dumps(cfg))
    return folder


def _other_tokenizer() -> Any:
    import transformers as tf
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = _tiny.SPECIALS + list(reversed(_tiny.WORDS + _tiny.FILLER))
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return tf.PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="[PAD]", unk_token="[UNK]",
                                      bos_token="[BOS]", eos_token="[EOS]")  # fmt: skip


def _big_tokenizer() -> Any:
    import transformers as tf
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = _tiny.SPECIALS + _tiny.WORDS + _tiny.FILLER + [f"x{i}" for i in range(50)]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return tf.PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="[PAD]", unk_token="[UNK]",
                                      bos_token="[BOS]", eos_token="[EOS]")  # fmt: skip


# ---- item 5: non-finite factors


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("which", ["p1", "p2"])
def test_load_refuses_non_finite_factors(tmp_path: Path, value: float, which: str) -> None:
    t = random_transform()
    folder = save_steer(t, tmp_path / "s")
    p1, p2 = t.p1.clone(), t.p2.clone()
    (p1 if which == "p1" else p2)[0, 1, 2] = value
    save_file({"p1": p1, "p2": p2}, str(folder / "steer.safetensors"))
    _edit(folder, weights_sha256=None)  # as a steer saved before the hash existed
    with pytest.raises(SteerFormatError, match="non-finite") as info:
        load_steer(folder)
    assert "steer.safetensors" in str(info.value) and which in str(info.value)


def test_transform_refuses_non_finite_factors() -> None:
    p = torch.zeros(1, 4, 2)
    bad = p.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(SteerInputError, match="non-finite"):
        random_transform().__class__(bad, p, 1e-3, "x")


# ---- item 5: boolean labels


@pytest.mark.parametrize(
    "labels",
    [
        np.array([True, False, True, False]),
        [True, False, True, False],
        pd.Series([True, False, True, False]),
        pd.Series([True, False, True, False], dtype="boolean"),
        [True, -1.0, 1.0, -1.0],
        [[True], [False], [True], [False]],
    ],
)
def test_boolean_labels_are_refused(labels: Any, tok: Any) -> None:
    with pytest.raises(LabelRangeError, match="booleans") as info:
        fit_steer(_tiny.model("gpt2"), tok, TEXTS, labels, SC, TC)
    assert "np.where(labels, 1.0, -1.0)" in str(info.value)


def test_numeric_labels_still_accepted(fitted: Any) -> None:
    assert fitted.n_texts == 4


# ---- item 5: base model and tokenizer


def test_fit_records_base_fingerprint(fitted: Any, tmp_path: Path) -> None:
    rec = fitted.transform.provenance[FINGERPRINT_KEY]
    assert rec["head"]["vocab_size"] == _tiny.VOCAB and rec["head"]["hidden_size"] == _tiny.D
    assert rec["tokenizer"].startswith("sha256:")
    cfg = json.loads(
        (save_steer(fitted.transform, tmp_path / "s") / "steer_config.json").read_text()
    )
    assert cfg["provenance"][FINGERPRINT_KEY] == json.loads(json.dumps(rec))


def test_attach_to_another_model_of_same_width(fitted: Any) -> None:
    t, other = fitted.transform, _tiny.model("gpt2", seed=1)
    with pytest.raises(BaseModelMismatchError, match="output embeddings differ") as info:
        attach(other, t, t.values(3.0))
    assert "allow_other_model=True" in str(info.value)
    with steering(other, t, t.values(3.0), allow_other_model=True) as h:
        assert h.attached
    with steering(_tiny.model("gpt2"), t, t.values(3.0)) as h:  # its own model: fine
        assert h.attached


def test_same_model_in_another_dtype_matches(fitted: Any) -> None:
    m64 = _tiny.build(_tiny.config("gpt2"), seed=0).to(torch.float64)
    with steering(m64, fitted.transform.to(dtype=torch.float64), fitted.transform.values(2.0)):
        pass


def test_generate_checks_model_and_tokenizer(fitted: Any, tok: Any) -> None:
    t = fitted.transform
    kw: dict[str, Any] = {"transform": t, "values": t.values(3.0), "max_new_tokens": 2}
    with pytest.raises(BaseModelMismatchError, match="output embeddings"):
        generate(_tiny.model("gpt2", seed=1), tok, ["the film"], **kw)
    with pytest.raises(BaseModelMismatchError, match="tokenizer"):
        generate(_tiny.model("gpt2"), _other_tokenizer(), ["the film"], **kw)
    out = generate(_tiny.model("gpt2", seed=1), tok, ["the film"], allow_other_model=True, **kw)
    assert len(out) == 1


def test_load_with_model_checks_and_rebases(fitted: Any, tok: Any, tmp_path: Path) -> None:
    folder = save_steer(fitted.transform, tmp_path / "s")
    other = _tiny.model("gpt2", seed=1)
    with pytest.raises(BaseModelMismatchError, match=str(folder)):
        load_steer(folder, model=other, tokenizer=tok)
    t = load_steer(folder, model=other, tokenizer=tok, allow_other_model=True)
    assert "rebased_from" in t.provenance
    generate(other, tok, ["the film"], transform=t, values=t.values(1.0), max_new_tokens=2)
    assert load_steer(folder, model=_tiny.model("gpt2"), tokenizer=tok) == fitted.transform
    again = rebase(fitted.transform, other, tok)
    with steering(other, again, again.values(1.0)):
        pass


def test_steer_without_record_is_not_checked() -> None:
    t = random_transform()  # built by hand: no base_fingerprint
    with steering(_tiny.model("gpt2", seed=1), t, [1.0, 1.0]):
        pass


# ---- item 9: crash-safe save


def test_save_binds_weights_to_config(tmp_path: Path) -> None:
    a = save_steer(random_transform(seed=0), tmp_path / "a")
    b = save_steer(random_transform(seed=1, eps=0.01), tmp_path / "b")
    cfg = json.loads((a / "steer_config.json").read_text())
    assert len(cfg["weights_sha256"]) == 64
    assert sorted(p.name for p in a.iterdir()) == ["steer.safetensors", "steer_config.json"]
    shutil.copy(b / "steer.safetensors", a / "steer.safetensors")  # new weights, old config
    with pytest.raises(SteerFormatError, match="different saves") as info:
        load_steer(a)
    assert str(a / "steer.safetensors") in str(info.value)
    shutil.copy(b / "steer_config.json", a / "steer_config.json")  # the save completes
    assert load_steer(a) == random_transform(seed=1, eps=0.01)


def test_interrupted_save_keeps_old_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import steer.core.io as io

    folder = save_steer(random_transform(seed=0), tmp_path / "s")

    def boom(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(io, "atomic_write_text", boom)
    with pytest.raises(KeyboardInterrupt):
        save_steer(random_transform(seed=1), folder)
    with pytest.raises(SteerFormatError, match="different saves"):
        load_steer(folder)
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


# ---- item 10: files and inputs


@pytest.mark.parametrize("keep", [0.5, 20])
def test_truncated_weights_name_the_file(tmp_path: Path, keep: float) -> None:
    folder = save_steer(random_transform(), tmp_path / "s")
    w = folder / "steer.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[: int(len(data) * keep) if keep < 1 else int(keep)])
    with pytest.raises(SteerFormatError, match="truncated") as info:
        load_steer(folder)
    assert str(w) in str(info.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("num_steers", "2"),
        ("hidden_size", 32.0),
        ("rank", "abc"),
        ("epsilon", "0.05"),
        ("epsilon", True),
        ("slot_names", "ab"),
        ("dummy_slots", ["1"]),
        ("base_model", 3),
        ("format_version", "1"),
    ],
)
def test_config_field_types(tmp_path: Path, key: str, value: Any) -> None:
    folder = _edit(save_steer(random_transform(), tmp_path / "s"), **{key: value})
    with pytest.raises(SteerFormatError, match=f"'{key}' must be") as info:
        load_steer(folder)
    assert "steer_config.json" in str(info.value)


def test_fit_steer_token_ids_and_context(tok: Any) -> None:
    model = _tiny.model("gpt2")
    with pytest.raises(SteerInputError, match="vocabulary has 100 tokens"):
        fit_steer(model, _big_tokenizer(), ["the film x3 good", "a movie x40"], [1.0, -1.0], SC, TC)
    long = " ".join(["the film was good"] * 30)
    tc = SteerTrainConfig(steps=1, batch_size=2, progress=False, max_length=256)
    with pytest.raises(SteerInputError, match="context holds 64; lower max_length"):
        fit_steer(model, tok, [long, "a bad movie"], [1.0, -1.0], SC, tc)


def test_generate_token_ids_and_context(tok: Any) -> None:
    model = _tiny.model("gpt2")
    with pytest.raises(SteerInputError, match="prompt 0 has token id"):
        generate(model, _big_tokenizer(), ["the film x44"], max_new_tokens=2)
    with pytest.raises(SteerInputError, match=r"60 tokens \+ 10 new tokens.*context holds 64"):
        generate(model, tok, [" ".join(["good"] * 60)], max_new_tokens=10)
    assert generate(model, tok, [" ".join(["good"] * 60)], max_new_tokens=4)


# ---- item 12: options


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"min_new_tokens": 5, "max_new_tokens": 2}, "min_new_tokens must lie"),
        ({"min_new_tokens": -1}, "min_new_tokens must lie"),
        ({"num_samples": 0}, "num_samples must be >= 1"),
        ({"num_samples": -1}, "num_samples must be >= 1"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
    ],
)
def test_generate_options(tok: Any, kw: dict[str, Any], match: str) -> None:
    with pytest.raises(SteerInputError, match=match):
        generate(_tiny.model("gpt2"), tok, ["the film"], **{"max_new_tokens": 2, **kw})


def test_decode_min_above_max(tok: Any) -> None:
    ids = torch.tensor([[4, 5]])
    with pytest.raises(SteerInputError, match="min_new_tokens"):
        decode(_tiny.model("gpt2"), ids, torch.ones_like(ids), max_new_tokens=1, min_new_tokens=3)


# ---- items 11 and 14: the CLI


def _model_dir(tmp_path: Path, tok: Any, seed: int = 0) -> Path:
    d = tmp_path / f"tiny{seed}"
    _tiny.model("gpt2", seed=seed).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def _error_lines(output: str) -> list[str]:
    lines = [line for line in output.splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.startswith("steer "))
    return lines[start:]


def test_cli_does_not_load_a_hub_model_named_by_the_steer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import steer.resources.models as models

    def no_load(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("load_model must not be called")

    monkeypatch.setattr(models, "load_model", no_load)
    folder = _edit(save_steer(random_transform(), tmp_path / "s"), base_model="org/some-model")
    runner = CliRunner()
    for args in (["generate", "--prompt", "a"], ["factors", "--out", str(tmp_path / "fa")],
                 ["highlight", "--text", "a b", "--out", str(tmp_path / "h.html")],
                 ["evaluate", "--out", str(tmp_path / "ev")]):  # fmt: skip
        res = runner.invoke(app, [*args, "--steer", str(folder)])
        assert res.exit_code == 1, res.output
        lines = _error_lines(res.output)
        assert len(lines) == 2 and "--model org/some-model" in lines[0], res.output
        assert "--allow-hub-model" in lines[0]


def test_cli_errors_are_short_and_debug_shows_the_trace(tmp_path: Path) -> None:
    folder = _edit(save_steer(random_transform(), tmp_path / "s"), num_steers="x")
    runner = CliRunner()
    res = runner.invoke(app, ["generate", "--steer", str(folder), "--prompt", "a", "--model", "m"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    lines = _error_lines(res.output)
    assert len(lines) == 2 and "'num_steers' must be an integer" in lines[0]
    assert "--debug" in lines[1]
    res = runner.invoke(
        app, ["--debug", "generate", "--steer", str(folder), "--prompt", "a", "--model", "m"]
    )
    assert res.exit_code != 0 and isinstance(res.exception, SteerFormatError)
    res = runner.invoke(app, ["generate", "--steer", str(tmp_path / "nope"), "--prompt", "a"])
    assert res.exit_code == 1 and len(_error_lines(res.output)) == 2


def test_cli_checks_the_base_model(tmp_path: Path, tok: Any) -> None:
    data = tmp_path / "d.csv"
    pd.DataFrame({"text": TEXTS, "label": [1.0, -1.0, 1.0, -1.0]}).to_csv(data, index=False)
    own, other = _model_dir(tmp_path, tok, 0), _model_dir(tmp_path, tok, 1)
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--model", str(own), "--data", str(data), "--out",
                              str(tmp_path / "s"), "--steps", "1", "--rank", "4"])  # fmt: skip
    assert res.exit_code == 0, res.output
    gen = ["generate", "--steer", str(tmp_path / "s"), "--prompt", "the film",
           "--max-new-tokens", "2"]  # fmt: skip
    assert runner.invoke(app, gen).exit_code == 0  # its own (local) base model
    res = runner.invoke(app, [*gen, "--model", str(other)])
    assert res.exit_code == 1 and "--allow-other-model" in _error_lines(res.output)[0]
    res = runner.invoke(app, [*gen, "--model", str(other), "--allow-other-model"])
    assert res.exit_code == 0, res.output
    bad = tmp_path / "b.csv"
    pd.DataFrame({"text": TEXTS, "label": [True, False, True, False]}).to_csv(bad, index=False)
    res = runner.invoke(app, ["train", "--model", str(own), "--data", str(bad), "--out",
                              str(tmp_path / "x"), "--steps", "1", "--rank", "4"])  # fmt: skip
    assert res.exit_code == 1 and "booleans" in _error_lines(res.output)[0]
    res = runner.invoke(app, [*gen, "--min-new-tokens", "5"])
    assert res.exit_code == 1 and "min_new_tokens" in _error_lines(res.output)[0]
