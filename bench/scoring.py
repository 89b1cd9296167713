"""Scoring throughput: tokens/s of causalmem's scorer (forward + metrics), on CPU or GPU.

Random-init GPT-NeoX models of a few shapes (no download): ``lab`` (the demo's 0.92M model),
``pythia-70m``, ``pythia-160m``, ``pythia-410m`` (Pythia's shapes and vocabulary). For each batch
size (and thread count on CPU) it prints

* tokens/s of ``score_instances`` (forward + the five metrics, the real code path),
* tokens/s of the forward pass alone, and of the forward + the reference repo's metric code
  (``log_softmax`` then gather / rank / ``-(p * logp).sum``), the peer; the ratio is ours / peer;
* on CUDA, model FLOP/s of the forward (2 × parameters + attention per token) as a share of the
  device's dense bf16 peak (MFU).

Run by hand, e.g.::

    python bench/scoring.py                          # CPU, lab model, 1 and 2 threads
    python bench/scoring.py --model pythia-160m --device cuda --batch-sizes 8 16 32
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from causalmem.instances import Instances
from causalmem.scoring.metrics import sequence_scores
from causalmem.scoring.runner import score_instances, torch_settings

SHAPES = {
    # name: (layers, d_model, heads, vocab, context)
    "lab": (2, 128, 4, 2048, 64),
    "pythia-70m": (6, 512, 8, 50304, 2049),
    "pythia-160m": (12, 768, 12, 50304, 2049),
    "pythia-410m": (24, 1024, 16, 50304, 2049),
}
# Dense bf16 tensor-core peaks (FLOP/s), from the vendors' data sheets.
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12}


def build(shape: str, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    layers, d, heads, vocab, ctx = SHAPES[shape]
    cfg = GPTNeoXConfig(
        vocab_size=vocab,
        hidden_size=d,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * d,
        max_position_embeddings=ctx,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = GPTNeoXForCausalLM(cfg)
    attn = "sdpa"
    model.config._attn_implementation = attn
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def flops_per_token(model: torch.nn.Module, seq_len: int) -> float:
    cfg = model.config
    n = sum(p.numel() for n_, p in model.named_parameters() if "embed_in" not in n_)
    attn = 2 * cfg.num_hidden_layers * seq_len * cfg.hidden_size  # QK^T and AV, causal ~ 1/2 × 4
    return 2.0 * n + attn


def reference_metrics(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The reference repo's per-token code path (src/models.py), summed per sequence."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    tgt = ids[:, 1:].unsqueeze(-1)
    tok = logp.gather(-1, tgt).squeeze(-1)
    rank = (logp > logp.gather(-1, tgt)).sum(-1)
    ent = -(logp.exp() * logp).sum(-1)
    return tok.sum(1) + rank.sum(1) + ent.sum(1)


def timed(fn, min_seconds: float) -> tuple[float, int]:
    fn()  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if dt >= min_seconds and n >= 2:
            return dt, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", choices=sorted(SHAPES), default="lab")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, help="bfloat16 | float32 (default: bf16 on CUDA)")
    ap.add_argument("--seq-len", type=int, default=None, help="default: the model's context")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=None)
    ap.add_argument("--threads", type=int, nargs="+", default=None, help="CPU thread counts")
    ap.add_argument("--seconds", type=float, default=3.0, help="minimum timing per cell")
    args = ap.parse_args()

    device = torch.device(args.device)
    dtype = (
        getattr(torch, args.dtype)
        if args.dtype
        else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    )
    seq_len = args.seq_len or SHAPES[args.model][4]
    batch_sizes = args.batch_sizes or ([16, 32, 64] if device.type == "cpu" else [8, 16, 32])
    threads = args.threads or ([1, 2] if device.type == "cpu" else [torch.get_num_threads()])
    model = build(args.model, device, dtype)
    n_params = sum(p.numel() for p in model.parameters())
    fpt = flops_per_token(model, seq_len)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    print(
        f"model {args.model}: {n_params / 1e6:.2f}M parameters, seq_len {seq_len}, "
        f"{fpt / 1e6:.1f} MFLOP/token forward; device {name}, dtype {str(dtype)[6:]}"
    )
    header = (
        f"{'threads':>7} {'batch':>5} {'scorer tok/s':>13} {'forward tok/s':>14} "
        f"{'peer tok/s':>11} {'ours/peer':>9}" + ("  MFU(fwd)" if peak else "")
    )
    print(header)
    rng = np.random.default_rng(0)
    vocab = SHAPES[args.model][3]
    for nt in threads:
        with torch_settings(nt if device.type == "cpu" else None):
            for bs in batch_sizes:
                n_seq = bs * 4
                ins = Instances.from_arrays(
                    rng.integers(0, vocab, size=(n_seq, seq_len)), np.arange(n_seq), [None] * n_seq
                )
                ids = torch.tensor(ins.tokens[:bs], device=device)
                dt, n = timed(
                    lambda ins=ins, bs=bs: score_instances(model, ins, batch_size=bs), args.seconds
                )
                ours = n * n_seq * (seq_len - 1) / dt
                with torch.inference_mode():
                    dt_f, n_f = timed(lambda ids=ids: model(input_ids=ids).logits, args.seconds)
                    dt_p, n_p = timed(
                        lambda ids=ids: reference_metrics(model(input_ids=ids).logits, ids),
                        args.seconds,
                    )
                    _ = sequence_scores(model(input_ids=ids).logits, ids)
                fwd = n_f * bs * seq_len / dt_f
                peer = n_p * bs * (seq_len - 1) / dt_p
                line = (
                    f"{nt:>7} {bs:>5} {ours:>13,.0f} {fwd:>14,.0f} {peer:>11,.0f} "
                    f"{ours / peer:>9.2f}"
                )
                if peak:
                    line += f"  {fwd * fpt / peak:8.1%}"
                print(line)


if __name__ == "__main__":
    main()
