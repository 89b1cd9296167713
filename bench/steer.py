"""Benchmark: LM-Steer overhead in generation, and training with vs without cached hidden states.

Run by hand (CPU, 1 torch thread by default; the embedded SmolLM2-135M-Instruct is converted
once on first use):

    .venv/bin/python bench/steer.py [--model smollm2-135m-instruct] [--threads 1] [--quick]

1. Generation: tokens/s of the same model, in the same run, unsteered vs steered (k = 2 slots,
   r = d), greedy, exactly ``--new-tokens`` tokens with the KV cache, at batch 1 and 8; runs are
   interleaved (A B A B ...) and the median is reported. Overhead = t_steered / t_unsteered - 1.
   The paper reports a generation-time ratio of 1.24 for LM-Steer (Table 4): 24 % overhead.
   Our goal: <= 5 %.
2. Training: seconds per step (batch 32 VADER movie snippets) with cached final hidden states
   (only the LM head runs) vs without (the whole model runs every step, the reference
   repository's way), plus the one-time cost of building the cache.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

# This file is named steer.py: drop its folder from the import path so that `import steer`
# finds the package, not this script.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))


def _median_time(fn: Any, reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_generation(lm: Any, new_tokens: int, reps: int) -> list[dict[str, Any]]:
    from steer import SteerTransform, steering
    from steer.core.hooks import head_hidden_size
    from steer.generation import _eos_ids, decode
    from steer.train import pad_batch, pad_id

    model, tok = lm.model, lm.tokenizer
    d = head_hidden_size(model)
    g = torch.Generator().manual_seed(0)
    t = SteerTransform(
        torch.randn(2, d, d, generator=g) * 1e-2,
        torch.randn(2, d, d, generator=g) * 1e-2,
        1e-3,
        lm.model_id,
        slot_names=("sentiment", "dummy"),
        dummy_slots=(1,),
    )
    prompts = [
        "The movie was",
        "I went to the store and",
        "My neighbour told me that",
        "The food at this restaurant",
        "Yesterday the weather",
        "Our new teacher",
        "The train to the city",
        "After the concert we",
    ]
    eos, pad = _eos_ids(model, tok), pad_id(tok)
    rows = []
    for bs in (1, 8):
        ids, mask = pad_batch([tok(p)["input_ids"] for p in prompts[:bs]], pad, side="left")

        def run(ids: torch.Tensor = ids, mask: torch.Tensor = mask) -> None:
            decode(model, ids, mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                   eos_token_ids=eos, pad_token_id=pad)  # fmt: skip

        run()  # warm-up
        modes: dict[str, list[float]] = {"unsteered": [], "steered": [], "steered_per_row": []}
        for _ in range(reps):
            for mode in modes:
                if mode == "unsteered":
                    s = time.perf_counter()
                    run()
                else:
                    vals: Any = t.values(5.0)
                    if mode == "steered_per_row":
                        vals = [t.values(v) for v in torch.linspace(-5, 5, bs).tolist()]
                    with steering(model, t, vals):
                        s = time.perf_counter()
                        run()
                modes[mode].append(time.perf_counter() - s)
        base = statistics.median(modes["unsteered"])
        for mode, times in modes.items():
            med = statistics.median(times)
            rows.append(
                {
                    "batch": bs,
                    "mode": mode,
                    "tok_per_s": bs * new_tokens / med,
                    "seconds": med,
                    "overhead_pct": 100 * (med / base - 1),
                }
            )
    # The hook alone, on one decoding step's hidden states.
    from steer.core.hooks import _Plan
    from steer.core.transform import as_values

    h = torch.randn(8, 1, d)
    plan = _Plan(t, as_values(t.values(5.0), 2), model.get_output_embeddings().weight)
    hook_s = _median_time(lambda: plan(h), 200)
    rows.append({"batch": 8, "mode": "hook only (one step)", "tok_per_s": float("nan"),
                 "seconds": hook_s, "overhead_pct": float("nan")})  # fmt: skip
    return rows


def bench_training(lm: Any, n_texts: int, steps: int) -> dict[str, float]:
    from steer import SteerConfig, SteerTrainConfig, fit_steer
    from steer.core.hooks import head_hidden_size
    from steer.resources.data import sentiment_corpus, vader_snippets

    corpus = sentiment_corpus(vader_snippets(), n_per_class=n_texts // 2, max_words=30, seed=0)
    d = head_hidden_size(lm.model)
    sc = SteerConfig(rank=d, slot_names=("sentiment",))
    out: dict[str, float] = {}
    for mode in ("always", "never"):
        tc = SteerTrainConfig(steps=steps, batch_size=32, max_length=48, progress=False,
                         hidden_cache=mode)  # type: ignore[arg-type]  # fmt: skip
        fit = fit_steer(lm.model, lm.tokenizer, corpus.texts, corpus.labels, sc, tc)
        step = statistics.median(fit.seconds)
        out[f"step_s_{mode}"] = step
        if mode == "always":
            out["cache_s"] = fit.cache_seconds
            out["cache_s_per_text"] = fit.cache_seconds / fit.n_texts
            out["tokens_per_step"] = 32 * fit.n_tokens / fit.n_texts
            out["n_texts"] = fit.n_texts
    out["speedup_per_step"] = out["step_s_never"] / out["step_s_always"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--train-texts", type=int, default=128)
    ap.add_argument("--train-steps", type=int, default=6)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.reps, args.train_steps, args.train_texts = 3, 3, 64

    from steer.resources.models import load_model

    lm = load_model(args.model)
    n_params = sum(p.numel() for p in lm.model.parameters()) / 1e6
    print(f"model {lm.model_id} ({n_params:.0f}M parameters), torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)")  # fmt: skip

    print(f"\n== generation: greedy, exactly {args.new_tokens} new tokens, KV cache, median of "
          f"{args.reps} interleaved runs ==")  # fmt: skip
    print(f"{'batch':>5}  {'mode':<22} {'tok/s':>8} {'seconds':>9} {'overhead':>9}")
    gen = bench_generation(lm, args.new_tokens, args.reps)
    for r in gen:
        tps = "" if r["tok_per_s"] != r["tok_per_s"] else f"{r['tok_per_s']:8.1f}"
        ovh = "" if r["overhead_pct"] != r["overhead_pct"] else f"{r['overhead_pct']:+8.1f}%"
        print(f"{r['batch']:>5}  {r['mode']:<22} {tps:>8} {r['seconds']:9.4f} {ovh:>9}")
    worst = max(r["overhead_pct"] for r in gen if r["mode"].startswith("steered"))
    print(
        f"worst steered overhead: {worst:+.1f}% (goal <= 5%; the paper: +24%, Table 4 ratio 1.24)"
    )

    print(f"\n== training: seconds per step, batch 32 VADER movie snippets, median of "
          f"{args.train_steps} steps ==")  # fmt: skip
    tr = bench_training(lm, args.train_texts, args.train_steps)
    print(f"tokens per step (mean)                : {tr['tokens_per_step']:.0f}")
    print(f"with cached hidden states (head only) : {tr['step_s_always']:.2f} s/step")
    print(f"without cache (whole model each step) : {tr['step_s_never']:.2f} s/step")
    print(f"speed-up per step                     : {tr['speedup_per_step']:.2f}x")
    print(f"one-time cache cost                   : {tr['cache_s']:.1f} s for {tr['n_texts']:.0f} "
          f"texts ({1000 * tr['cache_s_per_text']:.0f} ms/text, "
          f"= {32 * tr['cache_s_per_text']:.2f} s per 32 texts)")  # fmt: skip
    for epochs in (1, 3, 10):
        cached = tr["cache_s_per_text"] * 32 + epochs * tr["step_s_always"]
        print(f"  per batch of 32 texts over {epochs:>2} epoch(s): cached {cached:.2f} s vs "
              f"uncached {epochs * tr['step_s_never']:.2f} s "
              f"({epochs * tr['step_s_never'] / cached:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
