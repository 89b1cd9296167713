"""GPU scoring throughput and model-FLOP utilisation of the fused scorer on Pythia shapes.

One run on a CUDA machine builds random-weight GPT-NeoX models of Pythia's shapes (70M, 160M,
410M, 1B, 1.4B by default; Pythia's vocabulary, untied head), context 2 048, bfloat16, and times
``score_instances(..., method="fused")`` (the real code path: backbone, chunked head, metrics,
per-sequence sums, copies to the host) per batch size, with the chunk epilogue eager and, with
``--compile``, fused by ``torch.compile``. It prints and writes one JSON line per cell:

* ``tokens_per_s``: predicted tokens (``length - 1`` per sequence) per second;
* ``mfu``: model FLOP/s over the device's dense bf16 peak. Forward FLOPs per token are
  ``2 N + 4 L T d`` (PaLM's convention, appendix B, forward third): ``N`` = parameters
  except the input embedding (a lookup), the head included; ``L`` layers, ``T`` context,
  ``d`` width. Peaks from the vendors' data sheets: H100 / H200 SXM 989 TFLOP/s dense bf16,
  H100 PCIe 756, A100 312, L40S 362.

``--smoke`` runs a tiny config on whatever device there is (CPU in the tests). JSON lines go to
``$OUT/gpu_scoring.jsonl`` when ``$OUT`` is set, else to ``--json``.

    python bench/gpu_scoring.py                      # on the GPU machine
    python bench/gpu_scoring.py --smoke --device cpu # anywhere, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

PEAK_BF16 = {
    "H200": 989e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 70e12,
}
"""Dense bf16 tensor-core peak FLOP/s by device-name fragment (most specific first)."""

DEFAULT_SIZES = ("70m", "160m", "410m", "1b", "1.4b")


def device_peak(name: str) -> float | None:
    """Dense bf16 peak of a device name (None when unknown, e.g. a CPU)."""
    for key, value in PEAK_BF16.items():
        if key in name:
            return value
    return None


def build(
    layers: int, d: int, heads: int, vocab: int, context: int, device: Any, dtype: Any
) -> Any:
    """A random-weight GPT-NeoX (Pythia's defaults: rotary 25%, parallel residual)."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

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
    with torch.device(device):  # initialise on the device: no host copy of a 1.4B model
        torch.manual_seed(0)
        model: Any = GPTNeoXForCausalLM(cfg)  # type: ignore[call-arg]
    return model.to(dtype=dtype).eval().requires_grad_(False)


def forward_flops_per_token(model: Any, context: int) -> float:
    """``2 N + 4 L T d`` (see the module docstring)."""
    cfg = model.config
    n = sum(p.numel() for name, p in model.named_parameters() if "embed_in" not in name)
    return 2.0 * n + 4.0 * cfg.num_hidden_layers * context * cfg.hidden_size


def time_cell(
    model: Any, batch: int, context: int, reps: int, compile: bool, vocab_chunk: int | None
) -> tuple[float, int]:
    """Seconds for ``reps`` scoring calls of ``batch`` sequences (after one warm-up call)."""
    import torch

    from causalmem.instances import Instances
    from causalmem.scoring.runner import score_instances

    vocab = int(model.get_output_embeddings().weight.shape[0])
    rng = np.random.default_rng(0)
    ins = Instances.from_arrays(
        rng.integers(0, vocab, size=(batch, context)), np.arange(batch), [None] * batch
    )

    def call() -> None:
        score_instances(
            model,
            ins,
            batch_size=batch,
            method="fused",
            vocab_chunk=vocab_chunk,
            compile=compile,
        )

    call()  # warm-up (and compilation)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        call()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0, reps * batch * (context - 1)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every (size, batch, compile) cell; returns the JSON records."""
    import torch

    from causalmem.panel.pythia import PYTHIA_SHAPES, PYTHIA_VOCAB_SIZE

    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.smoke:
        shapes = {"smoke": (2, 64, 4)}
        vocab, context, batches, dtype = 512, 32, [2], torch.float32
    else:
        shapes = {s: PYTHIA_SHAPES[s] for s in args.sizes}
        vocab, context, batches = PYTHIA_VOCAB_SIZE, args.context, args.batch_sizes
        dtype = torch.bfloat16
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"
    peak = device_peak(name) if dev.type == "cuda" else None
    records = []
    for size, (layers, d, heads) in shapes.items():
        model = build(layers, d, heads, vocab, context, dev, dtype)
        n_params = sum(p.numel() for p in model.parameters())
        fpt = forward_flops_per_token(model, context)
        for compile in [False, True] if args.compile else [False]:
            for batch in batches:
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(dev)
                try:
                    seconds, tokens = time_cell(
                        model, batch, context, args.reps, compile, args.vocab_chunk
                    )
                except torch.cuda.OutOfMemoryError:
                    records.append({"size": size, "batch": batch, "error": "out of memory"})
                    continue
                rate = tokens / seconds
                rec = {
                    "size": size,
                    "params": n_params,
                    "context": context,
                    "batch": batch,
                    "dtype": str(dtype).removeprefix("torch."),
                    "compile": compile,
                    "device": name,
                    "tokens_per_s": rate,
                    "flops_per_token": fpt,
                    "mfu": (rate * fpt / peak) if peak else None,
                    "peak_mem_gib": (
                        torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None
                    ),
                    "torch": torch.__version__,
                }
                records.append(rec)
                mfu = f"{rec['mfu']:.1%}" if rec["mfu"] is not None else "n/a"
                print(
                    f"{size:>6} batch {batch:>3} compile={compile!s:5} "
                    f"{rate:>12,.0f} tok/s  MFU {mfu}",
                    flush=True,
                )
        del model
    return records


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Parse the options, run, write JSON lines; return the records."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny config, any device (tests)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES))
    ap.add_argument("--context", type=int, default=2048)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--vocab-chunk", type=int, default=None)
    ap.add_argument("--compile", action="store_true", help="also time the compiled epilogue")
    ap.add_argument("--json", default=None, help="JSON-lines file (default $OUT/…)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.reps = 1
    records = run(args)
    out = os.environ.get("OUT")
    target = Path(out) / "gpu_scoring.jsonl" if out else (Path(args.json) if args.json else None)
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "a") as fh:
            for rec in records:
                fh.write(json.dumps(rec) + "\n")
    return records


if __name__ == "__main__":
    main()
