"""Scoring throughput and peak memory: fused scorer vs today's full-logits path vs the peer.

Random-init GPT-NeoX models of Pythia's shapes (no download; :data:`PYTHIA_SHAPES`, Pythia's
50 304-entry vocabulary) or the demo's ``lab`` shape. Three ways to get the per-token metrics
(log-probability, entropy, rank) of the same batch:

* ``fused``: ``score_instances(..., method="fused")``: backbone hidden states, the head applied
  one vocabulary chunk at a time, per-sequence sums (causalmem's default);
* ``logits``: ``score_instances(..., method="logits")``: the full ``[batch, length, vocab]``
  logits then :func:`causalmem.scoring.metrics.sequence_scores` (the path before issue 16);
* ``peer``: the model's logits then the reference repository's metric code, reimplemented
  faithfully (pietrolesci/memorisation-profiles, ``src/models.py``, ``HFCausalLM.
  compute_statistics``, commit 9249673bf0b03b66c18545d1d96c3473d76ad605): ``log_softmax`` of
  the full logits, ``.contiguous()`` copies of the shifted log-probabilities,
  ``take_along_dim`` of the target, rank ``(logprobs > target).sum``, entropy
  ``-(logprobs * logprobs.exp()).sum``, per-token results moved to numpy lists.

Each cell runs in a fresh subprocess so that its peak memory is its own: CPU, the rise of the
peak resident set size (``ru_maxrss``) over the resident size after the model and inputs are
built; CUDA, ``torch.cuda.max_memory_allocated`` over the allocation before scoring. Tokens/s
counts predicted tokens (``length - 1`` per sequence) over the timed repetitions after one
warm-up; ``best`` is the fastest repetition (robust to a machine shared with other jobs).

Run by hand, e.g.::

    OMP_NUM_THREADS=1 python bench/scoring.py --model pythia-70m --contexts 512 2048 \\
        --batch-sizes 4 1 --threads 1 --json out/bench_scoring.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

METHODS = ("fused", "logits", "peer")


def shapes() -> dict[str, tuple[int, int, int, int]]:
    """name -> (layers, d_model, heads, vocab)."""
    from causalmem.panel.pythia import PYTHIA_SHAPES, PYTHIA_VOCAB_SIZE

    out = {"lab": (2, 128, 4, 2048)}
    out.update({f"pythia-{k}": (*v, PYTHIA_VOCAB_SIZE) for k, v in PYTHIA_SHAPES.items()})
    return out


def build(name: str, context: int, device: Any, dtype: Any) -> Any:
    """A random-init GPT-NeoX of the named shape, eval mode, SDPA attention."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    layers, d, heads, vocab = shapes()[name]
    cfg = GPTNeoXConfig(
        vocab_size=vocab,
        hidden_size=d,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * d,
        max_position_embeddings=max(context, 2048),
        tie_word_embeddings=False,
    )
    cfg._attn_implementation = "sdpa"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model: Any = GPTNeoXForCausalLM(cfg)  # type: ignore[call-arg]
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def peer_statistics(model: Any, token_ids: Any) -> dict[str, list[Any]]:
    """The reference repo's ``compute_statistics`` (see the module docstring for provenance)."""
    import torch

    with torch.inference_mode():
        labels = token_ids.clone()
        logprobs = model(token_ids).logits.log_softmax(-1)
        shift_labels = labels[..., 1:].contiguous()
        shift_logprobs = logprobs[..., :-1, :].contiguous()
        true_logprobs = shift_logprobs.take_along_dim(dim=-1, indices=shift_labels[..., None])
        sup = true_logprobs.squeeze(-1).neg()
        rank = (shift_logprobs > true_logprobs).long().sum(-1)
        entropy = (shift_logprobs * shift_logprobs.exp()).sum(-1).neg()
        return {
            "sup": sup.cpu().float().numpy().tolist(),
            "rank": rank.cpu().numpy().tolist(),
            "entropy": entropy.cpu().float().numpy().tolist(),
        }


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def run_cell(
    model_name: str, method: str, context: int, batch: int, reps: int, device: str, dtype: str
) -> dict[str, Any]:
    """Time one (method, context, batch) cell in this process; return its figures."""
    import torch

    from causalmem.instances import Instances
    from causalmem.scoring.runner import score_instances

    dev = torch.device(device)
    tdtype = getattr(torch, dtype)
    model = build(model_name, context, dev, tdtype)
    vocab = shapes()[model_name][3]
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, vocab, size=(batch, context))
    ins = Instances.from_arrays(tokens, np.arange(batch), [None] * batch)
    ids = torch.tensor(tokens, device=dev)
    fn: Callable[[], Any]
    if method == "peer":
        fn = lambda: peer_statistics(model, ids)  # noqa: E731
    else:
        fn = lambda: score_instances(model, ins, batch_size=batch, method=method)  # type: ignore[arg-type]  # noqa: E731
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    else:
        base = _rss_bytes()
    fn()  # warm-up (also reaches the peak)
    if cuda:
        torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    seconds = sum(times)
    peak = (torch.cuda.max_memory_allocated(dev) if cuda else _peak_rss_bytes()) - base
    n_tok = reps * batch * (context - 1)
    return {
        "model": model_name,
        "method": method,
        "context": context,
        "batch": batch,
        "reps": reps,
        "device": device,
        "dtype": dtype,
        "threads": torch.get_num_threads(),
        "tokens_per_s": n_tok / seconds,
        "tokens_per_s_best": batch * (context - 1) / min(times),
        "seconds": seconds,
        "rep_seconds": times,
        "peak_extra_mib": peak / 2**20,
        "logits_mib": batch * context * vocab * 4 / 2**20,
    }


def main() -> None:
    """Run every cell in its own subprocess and print a table (JSON lines with --json)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="pythia-70m")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, help="float32 | bfloat16 (default fp32 on CPU)")
    ap.add_argument("--contexts", type=int, nargs="+", default=[512, 2048])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="one per context")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--rounds", type=int, default=1, help="repeat the whole grid (interleaved)")
    ap.add_argument("--json", default=None, help="append JSON lines to this file")
    ap.add_argument("--cell", nargs=4, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    if args.cell:  # worker: one cell, JSON on stdout
        import torch

        torch.set_num_threads(args.threads)
        method, context, batch, reps = args.cell
        res = run_cell(args.model, method, int(context), int(batch), int(reps), args.device, dtype)
        print(json.dumps(res))
        return
    batches = args.batch_sizes or [max(1, 2048 // c) for c in args.contexts]
    env = {**os.environ, **{v: str(args.threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}}
    print(f"load: {os.getloadavg()}; model {args.model}, {args.device} {dtype}, "
          f"{args.threads} thread(s)")  # fmt: skip
    head = f"{'context':>7} {'batch':>5} {'method':>7} {'tokens/s':>10} {'best':>8} {'peak MiB':>9}"
    print(head)
    pairs = list(zip(args.contexts, batches, strict=True))
    grid = [(c, b, m) for _ in range(args.rounds) for c, b in pairs for m in args.methods]
    for context, batch, method in grid:
        cmd = [
            sys.executable, __file__, "--model", args.model, "--device", args.device,
            "--dtype", dtype, "--threads", str(args.threads),
            "--cell", method, str(context), str(batch), str(args.reps),
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
            print(f"{context:>7} {batch:>5} {method:>7}  failed: {tail}")
            continue
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        res["load"] = os.getloadavg()[0]
        print(
            f"{context:>7} {batch:>5} {method:>7} {res['tokens_per_s']:>10,.0f} "
            f"{res['tokens_per_s_best']:>8,.0f} {res['peak_extra_mib']:>9,.0f}",
            flush=True,
        )
        if args.json:
            with open(args.json, "a") as fh:
                fh.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
