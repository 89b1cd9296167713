"""Shared builders of the causalmem tests: small panels and families, text, tiny checkpoints.

Test modules import what they need from here (``from tests.causalmem.builders import ...``);
torch and transformers are imported only by the checkpoint builders.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from causalmem.lab.ground_truth import GroundTruth
from causalmem.panel.io import write_panel
from causalmem.panel.panel import Panel
from causalmem.panel.pythia import pythia_lr_schedule
from causalmem.panel.simulate import simulate_panel

if TYPE_CHECKING:
    from causalmem.instances import Instances
    from causalmem.scoring.checkpoints import Checkpoint

# ----------------------------------------------------------------------------- families
STEPS = np.arange(0, 301, 50)
COHORTS = STEPS[1:]
TOTAL = 300


def family_frame(
    scales: tuple[float, ...] = (1.0, 1.5, 2.2),
    peaks: tuple[float, ...] = (4e-3, 3e-3, 2e-3),
    *,
    lr_driven: bool = True,
    n_per: int = 30,
    n_never: int = 80,
    seed: int = 0,
) -> pd.DataFrame:
    """One long frame, one outcome column ``logprob_<k>`` per model, shared instances.

    ATT_k(g, c) = scale_k * (12 * s(g) * exp(-(c - g) / 100) + 2) for c >= g, where s(g) is the
    model's LR over its macro-batch relative to its peak (``lr_driven``) or 1. Instance
    difficulty is shared by every model (so the bootstrap must be joint).
    """
    rng = np.random.default_rng(seed)
    g = np.concatenate([np.repeat(COHORTS, n_per), np.full(n_never, -1)])
    n = g.size
    difficulty = rng.normal(size=(n, 1)) * 3 + rng.normal(size=(n, STEPS.size))
    frame = pd.DataFrame(
        {
            "unit": np.repeat(np.arange(n), STEPS.size),
            "step": np.tile(STEPS, n),
            "cohort": pd.array(np.repeat(np.where(g > 0, g, -1), STEPS.size)).astype("Int64"),
        }
    )
    frame.loc[frame["cohort"] == -1, "cohort"] = pd.NA
    gg = np.repeat(g, STEPS.size).astype(float)
    tt = frame["step"].to_numpy(dtype=float)
    for k, (scale, peak) in enumerate(zip(scales, peaks, strict=True)):
        sched = pythia_lr_schedule(peak, TOTAL, every=1)
        lr = sched["lr"].to_numpy()
        rel = {
            c: float(lr[(sched["step"] > c - 50) & (sched["step"] <= c)].mean()) / peak
            for c in COHORTS
        }
        s = np.array([rel.get(x, 0.0) for x in gg]) if lr_driven else np.ones_like(gg)
        post = (gg > 0) & (tt >= gg)
        att = np.where(post, scale * (12 * s * np.exp(-(tt - gg) / 100) + 2), 0.0)
        trend = -5 * np.log1p(tt / 50)
        y = difficulty.ravel() + trend + att + rng.normal(size=n * STEPS.size) * 0.5
        frame[f"logprob_{k}"] = y
    return frame


def write_family_files(
    root: Path,
    frame: pd.DataFrame,
    *,
    peaks: tuple[float, ...] = (4e-3, 3e-3, 2e-3),
    biters: int = 99,
) -> Path:
    """Write one causalmem panel per model (the last as CSV) and a family TOML; return it."""
    names = ["tiny", "small", "big"][: len(peaks)]
    blocks = []
    for k, (name, peak) in enumerate(zip(names, peaks, strict=True)):
        sub = frame[["unit", "step", "cohort", f"logprob_{k}"]].rename(
            columns={f"logprob_{k}": "logprob"}
        )
        if k == len(peaks) - 1:
            path = root / f"{name}.csv"
            sub.to_csv(path, index=False)
        else:
            path = root / f"{name}.parquet"
            panel = Panel.from_frame(
                sub,
                unit="unit",
                step="step",
                cohort="cohort",
                outcomes="logprob",
                meta={"model": name},
            )
            write_panel(panel, path)
        blocks.append(
            f'[[family.models]]\nname = "{name}"\npanel = "{path.name}"\n'
            f"n_params = {10 ** (5 + k)}\nmax_lr = {peak}\ntotal_steps = {TOTAL}\n"
        )
    toml = root / "family.toml"
    toml.write_text(
        f'[family]\noutcome = "logprob"\nepoch_end = 250\nbiters = {biters}\nseed = 7\n\n'
        + "\n".join(blocks)
    )
    return toml


# ----------------------------------------------------------------------------- comparisons
def two_models(seed: int, rho: float) -> tuple[pd.DataFrame, float]:
    """One panel, two outcome columns = two 'models' scoring the same instances.

    Cell effects tau_A(g, e) and tau_B(g, e) = rho-correlated draws; instance difficulty is shared
    across models (the reason the bootstrap must be joint)."""
    rng = np.random.default_rng(seed)
    steps = np.arange(1, 9)
    cohorts = np.arange(3, 9)
    n_per, n_never = 25, 60
    g = np.concatenate([np.repeat(cohorts, n_per), np.full(n_never, np.inf)]).astype(float)
    n = g.size
    cells = [(gg, t) for gg in cohorts for t in steps if t >= gg]
    za = rng.normal(size=len(cells))
    zb = rho * za + np.sqrt(1 - rho**2) * rng.normal(size=len(cells))
    ta = dict(zip(cells, za, strict=True))
    tb = dict(zip(cells, zb, strict=True))
    difficulty = rng.normal(size=(n, 1)) + 0.8 * rng.normal(size=(n, steps.size))
    ya = np.empty((n, steps.size))
    yb = np.empty((n, steps.size))
    for j, t in enumerate(steps):
        ea = np.array([ta.get((gg, t), 0.0) for gg in g])
        eb = np.array([tb.get((gg, t), 0.0) for gg in g])
        noise = rng.normal(size=(n, 2)) * 0.3
        ya[:, j] = difficulty[:, j] + ea + noise[:, 0] + 0.05 * t
        yb[:, j] = difficulty[:, j] + eb + noise[:, 1] + 0.08 * t
    df = pd.DataFrame(
        {
            "unit": np.repeat(np.arange(n), steps.size),
            "step": np.tile(steps, n),
            "cohort": pd.array(np.repeat(np.where(np.isfinite(g), g, np.nan), steps.size)).astype(
                "Int64"
            ),
            "y_a": ya.ravel(),
            "y_b": yb.ravel(),
        }
    )
    true_rho = float(np.corrcoef(za, zb)[0, 1])
    return df, true_rho


# ----------------------------------------------------------------------------- lab text
def synthetic_text(n_sentences: int = 4000, seed: int = 0, n_words: int = 3000) -> str:
    """Sentences of Zipf-distributed pseudo-words and function words, in paragraphs of four."""
    rng = np.random.default_rng(seed)
    syl = [c + v for c in "bcdfghklmnprstvwz" for v in "aeiou"]
    words = sorted({"".join(rng.choice(syl, size=rng.integers(1, 4))) for _ in range(n_words)})
    p = 1.0 / np.arange(1, len(words) + 1) ** 1.1
    p /= p.sum()
    func = ["the", "a", "of", "and", "to", "in", "is", "was", "with", "that"]
    out = []
    for _ in range(n_sentences):
        k = int(rng.integers(5, 12))
        ws = [
            words[i] if rng.random() < 0.7 else func[int(rng.integers(len(func)))]
            for i in rng.choice(len(words), size=k, p=p)
        ]
        out.append(" ".join(ws).capitalize() + ".")
    return "\n\n".join(" ".join(out[i : i + 4]) for i in range(0, len(out), 4))


# ----------------------------------------------------------------------------- checkpoints
VOCAB, SEQ = 61, 12


def tiny_model(seed: int) -> object:
    """A random-init one-layer GPT-NeoX (vocabulary VOCAB, context SEQ), seeded."""
    import torch
    import transformers

    cfg = transformers.GPTNeoXConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=SEQ,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return transformers.GPTNeoXForCausalLM(cfg)


def make_checkpoints(root: Path, steps: tuple[int, ...] = (0, 5, 10)) -> list[Checkpoint]:
    """Save one random-init tiny GPT-NeoX per step (different seeds) as step<N> folders."""
    from causalmem.scoring.checkpoints import local_checkpoints, quiet_transformers

    root.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(steps):
        with quiet_transformers():
            tiny_model(100 + i).save_pretrained(root / f"step{s}")
    return list(local_checkpoints(root))


def make_instances(n_train: int = 9, n_val: int = 5, seed: int = 0) -> Instances:
    """Random token instances: trained (cohorts 5/10, alternating) then never-trained."""
    from causalmem.instances import Instances

    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, VOCAB, size=(n_train + n_val, SEQ))
    cohorts = [5 if i % 2 else 10 for i in range(n_train)] + [None] * n_val
    units = np.r_[np.arange(n_train), -1 - np.arange(n_val)]
    return Instances.from_arrays(tokens, units, cohorts)


# ----------------------------------------------------------------------------- ground truth
def fake_truth(seed: int, n: int = 100) -> GroundTruth:
    """A GroundTruth whose 'runs' are a simulated panel with a known ATT (surprisal-like, -1)."""
    steps = [0, 50, 100, 150, 200, 250]
    sim = simulate_panel(
        cohorts=[50, 100, 150, 200],
        units_per_cohort=n,
        n_never=2 * n,
        steps=steps,
        noise_sd=0.3,
        seed=seed,
    )
    panel = sim.to_panel()
    t = sim.truth
    pos = {s: i for i, s in enumerate(steps)}
    tau = -t["att"].to_numpy()  # memorisation = -ATT (sign -1)
    truth = pd.DataFrame(
        {
            "term": [f"tau({g},{c})" for g, c in zip(t["group"], t["time"], strict=True)],
            "estimate": tau,
            "std_error": 0.0,
            "group": t["group"].astype(np.int64),
            "time": t["time"].astype(np.int64),
            "event_period": [pos[c] - pos[g] for g, c in zip(t["group"], t["time"], strict=True)],
            "post": t["time"] >= t["group"],
            "n": n,
            "swapped": True,
            "outcome": "y",
            "estimate_adjusted": tau,
            "std_error_adjusted": 0.0,
        }
    )
    empty = pd.DataFrame()
    checks = pd.DataFrame({"step": steps, "identical": False, "expected_identical": False})
    return GroundTruth(
        truth=truth,
        control_shift=empty,
        panel=panel,
        counterfactual=panel,
        swapped=empty,
        checks=checks,
        first_swap_step=1,
        analysis_steps=tuple(steps),
        outcome="y",
        sign=-1,
        provenance={"data_seed": seed},
    )
