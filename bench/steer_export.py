"""Benchmark and check: exported steers on SmolLM2-135M-Instruct (issue 17, item 6).

Run by hand (CPU, 1 torch thread; the embedded SmolLM2 is converted once on first use):

    .venv/bin/python bench/steer_export.py [--model smollm2-135m-instruct] [--quick] [--out x.json]

1. Exactness on the real model: a k = 2 steer (one labelled slot, one dummy, r = d = 576,
   eps_0 = 1e-3, factors ~ 0.2 N(0, 1), large enough to move the logits by ~10 %, values
   (-5, 1); or a trained steer with ``--steer DIR``) is exported
   as a baked folder, a PEFT LoRA, and GGUF files (f32, f16); each artefact is read back by its
   own reader and its logits on four prompts are compared with the hooked steer (max |diff| /
   max |logit|). Greedy continuations of the baked model and the hooked steer are compared
   token for token, and the tokenizer written into the GGUF file (read back with
   ``AutoTokenizer.from_pretrained(folder, gguf_file=...)``) must encode like the original.
2. Generation speed: tokens/s, greedy, exactly ``--new-tokens`` tokens with the KV cache, at
   batch 1 and 8, for the unsteered model, the hooked steer, the baked model, the PEFT model and
   the model read back from the f32 GGUF; runs are interleaved and the median is reported.
   The baked head is an ordinary ``[V, d]`` matrix, so its cost equals the base model's by
   construction; the measurement shows how close the timings are on a loaded machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))

PROMPTS = [
    "The movie was",
    "I went to the store and",
    "My neighbour told me that",
    "The food at this restaurant",
    "Yesterday the weather",
    "Our new teacher",
    "The train to the city",
    "After the concert we",
]


def _rel(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got - ref).abs().max() / ref.abs().max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--steer", type=Path, default=None, help="a trained steer folder to export")
    ap.add_argument("--value", type=float, default=-5.0, help="labelled-slot value s")
    ap.add_argument("--factor-scale", type=float, default=0.2, help="random steer: P ~ scale N")
    ap.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    reps = 2 if args.quick else args.reps
    warnings.simplefilter("ignore")
    import transformers as tf
    from peft import PeftModel

    from steer import SteerTransform, load_steer, steering
    from steer.core.compat import rebase
    from steer.core.hooks import head_hidden_size
    from steer.export import bake, export_baked, export_gguf, export_peft
    from steer.generation import _eos_ids, decode
    from steer.resources.models import load_model
    from steer.train import pad_batch, pad_id

    t0 = time.perf_counter()
    lm = load_model(args.model)
    model, tok = lm.model, lm.tokenizer
    print(f"loaded {lm.model_id} in {time.perf_counter() - t0:.1f} s")
    d = head_hidden_size(model)
    if args.steer is not None:
        t = load_steer(args.steer, model=model, tokenizer=tok)
    else:
        g = torch.Generator().manual_seed(0)
        t = SteerTransform(
            torch.randn(2, d, d, generator=g) * args.factor_scale,
            torch.randn(2, d, d, generator=g) * args.factor_scale,
            1e-3,
            lm.model_id,
            slot_names=("detox", "dummy"),
            dummy_slots=(1,),
        )
        t = rebase(t, model, tok)  # recorded for this model, as fit_steer does
    values = t.values(args.value)
    res: dict[str, Any] = {"model": lm.model_id, "values": values, "new_tokens": args.new_tokens}

    tmp = Path(tempfile.mkdtemp(prefix="steer-export-"))
    timings: dict[str, float] = {}
    jobs: list[tuple[str, Any, Path, dict[str, Any]]] = [
        ("baked", export_baked, tmp / "baked", {}),
        ("peft", export_peft, tmp / "lora", {}),
        ("gguf_f32", export_gguf, tmp / "m32.gguf", {"dtype": "f32"}),
        ("gguf_f16", export_gguf, tmp / "m16.gguf", {"dtype": "f16"}),
    ]
    for name, fn, target, kw in jobs:
        s = time.perf_counter()
        fn(model, t, target, values, tokenizer=tok, **kw)
        timings[name] = time.perf_counter() - s
    size = {
        "baked_MB": sum(f.stat().st_size for f in (tmp / "baked").glob("*.safetensors")) / 1e6,
        "peft_MB": (tmp / "lora" / "adapter_model.safetensors").stat().st_size / 1e6,
        "gguf_f32_MB": (tmp / "m32.gguf").stat().st_size / 1e6,
        "gguf_f16_MB": (tmp / "m16.gguf").stat().st_size / 1e6,
    }
    res["export_seconds"], res["sizes_MB"] = timings, size
    print("export seconds", {k: round(v, 2) for k, v in timings.items()}, "sizes MB",
          {k: round(v, 1) for k, v in size.items()})  # fmt: skip

    baked = tf.AutoModelForCausalLM.from_pretrained(tmp / "baked").eval()
    peft_model = PeftModel.from_pretrained(copy.deepcopy(model), tmp / "lora").eval()
    g32 = tf.AutoModelForCausalLM.from_pretrained(tmp, gguf_file="m32.gguf").eval()
    g16 = tf.AutoModelForCausalLM.from_pretrained(tmp, gguf_file="m16.gguf").eval()
    enc = tok(PROMPTS[:4], return_tensors="pt", padding=True)
    with torch.no_grad():
        base_logits = model(**enc).logits
        with steering(model, t, values):
            ref = model(**enc).logits
        rel = {
            "steer_vs_base": _rel(ref, base_logits),
            "baked": _rel(baked(**enc).logits, ref),
            "peft": _rel(peft_model(**enc).logits, ref),
            "gguf_f32": _rel(g32(**enc).logits, ref),
            "gguf_f16": _rel(g16(**enc).logits, ref),
        }
    res["max_rel_logit_diff_vs_hooked"] = rel
    print("max |logit diff| / max |logit| vs the hooked steer:",
          {k: f"{v:.2e}" for k, v in rel.items()})  # fmt: skip
    gtok = tf.AutoTokenizer.from_pretrained(tmp, gguf_file="m32.gguf")
    probe = PROMPTS + ["Hello, world! 123 ümlaut   spaces\n<|im_start|>user"]
    same_tok = all(gtok(p)["input_ids"] == tok(p)["input_ids"] for p in probe)
    res["gguf_tokenizer_encodes_identically"] = same_tok
    print("GGUF tokenizer encodes the probes identically:", same_tok)

    eos, pad = _eos_ids(model, tok), pad_id(tok)
    ids1, mask1 = pad_batch([tok(PROMPTS[0])["input_ids"]], pad, side="left")
    with torch.no_grad():
        with steering(model, t, values):
            hooked_seq = decode(model, ids1, mask1, max_new_tokens=args.new_tokens,
                                min_new_tokens=args.new_tokens, eos_token_ids=eos,
                                pad_token_id=pad)  # fmt: skip
        baked_seq = decode(baked, ids1, mask1, max_new_tokens=args.new_tokens,
                           min_new_tokens=args.new_tokens, eos_token_ids=eos,
                           pad_token_id=pad)  # fmt: skip
        base_seq = decode(model, ids1, mask1, max_new_tokens=args.new_tokens,
                          min_new_tokens=args.new_tokens, eos_token_ids=eos,
                          pad_token_id=pad)  # fmt: skip
    same_gen = torch.equal(hooked_seq.tokens, baked_seq.tokens)
    moved = not torch.equal(hooked_seq.tokens, base_seq.tokens)
    res["greedy_identical_baked_vs_hooked"] = same_gen
    res["greedy_steer_differs_from_base"] = moved
    print(f"greedy continuation: baked == hooked: {same_gen}; steered != unsteered: {moved}")
    for label, seq in (("unsteered", base_seq), ("hooked", hooked_seq), ("baked", baked_seq)):
        print(f"  {label:>9}: {tok.decode(seq.tokens[0])!r}")

    in_memory = bake(model, t, values)
    rows = []
    for bs in (1, 8):
        ids, mask = pad_batch([tok(p)["input_ids"] for p in PROMPTS[:bs]], pad, side="left")
        runners = {
            "unsteered": (model, False),
            "hooked": (model, True),
            "baked": (in_memory, False),
            "baked_loaded": (baked, False),
            "peft": (peft_model, False),
            "gguf_f32_loaded": (g32, False),
        }
        times: dict[str, list[float]] = {k: [] for k in runners}

        def run(m: Any, ids: torch.Tensor = ids, mask: torch.Tensor = mask) -> None:
            decode(m, ids, mask, max_new_tokens=args.new_tokens,
                   min_new_tokens=args.new_tokens, eos_token_ids=eos, pad_token_id=pad)  # fmt: skip

        for m, _ in runners.values():
            run(m)  # warm-up
        for _ in range(reps):
            for name, (m, hooked) in runners.items():
                if hooked:
                    with steering(model, t, values):
                        s = time.perf_counter()
                        run(m)
                else:
                    s = time.perf_counter()
                    run(m)
                times[name].append(time.perf_counter() - s)
        base = statistics.median(times["unsteered"])
        for name, ts in times.items():
            med = statistics.median(ts)
            rows.append({"batch": bs, "mode": name, "tok_per_s": bs * args.new_tokens / med,
                         "seconds": med, "vs_unsteered_pct": 100 * (med / base - 1)})  # fmt: skip
    res["generation"] = rows
    print(f"\n{'batch':>5} {'mode':>16} {'tok/s':>8} {'s':>7} {'vs base':>8}")
    for r in rows:
        print(f"{r['batch']:>5} {r['mode']:>16} {r['tok_per_s']:>8.1f} {r['seconds']:>7.3f} "
              f"{r['vs_unsteered_pct']:>+7.1f}%")  # fmt: skip
    if args.out is not None:
        args.out.write_text(json.dumps(res, indent=2, default=str) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
