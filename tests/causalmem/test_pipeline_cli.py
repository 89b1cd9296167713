"""End to end on tiny local GPT-NeoX checkpoints: `causalmem sample`, `score`, `fit`, `report`.

The checkpoints are random-init models saved with ``save_pretrained`` (no hub); the training
order is a numpy token array read in batches of 4 sequences, so the expected cohorts follow from
:func:`causalmem.instances.sample_macro_batches` by hand: position ``i`` is trained by step
``i // 4 + 1``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("transformers")

from causalmem.cli import app  # noqa: E402
from causalmem.cli.pipeline import parse_steps  # noqa: E402
from causalmem.panel.io import read_panel  # noqa: E402
from causalmem.scoring.runner import read_manifest, read_scores  # noqa: E402
from causalmem.scoring.sampling import read_instance_table  # noqa: E402
from tests.causalmem.builders import SEQ, VOCAB, make_checkpoints  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
STEPS = (0, 2, 4, 8)
BATCH = 4


def _run(*args: object) -> Any:
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pipe")
    make_checkpoints(root / "ckpts", steps=STEPS)
    rng = np.random.default_rng(0)
    np.save(root / "order.npy", rng.integers(0, VOCAB, (8 * BATCH, SEQ)).astype(np.uint16))
    np.save(root / "val.npy", rng.integers(0, VOCAB, (30, SEQ)).astype(np.int32))
    return root


def _recipe_module() -> ModuleType:
    path = ROOT / "analyses" / "16_pythia_paper" / "run.py"
    spec = importlib.util.spec_from_file_location("analysis16_run", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def pipeline(run_dir: Path) -> Path:
    """Run the recipe runner (all four commands) on the tiny local checkpoints."""
    recipe = run_dir / "recipe.toml"
    recipe.write_text(
        f"""
[sample]
order = "{run_dir / "order.npy"}"
validation = "{run_dir / "val.npy"}"
batch_size = {BATCH}
steps = "0,2,4,8"
k = 2
m = 2
seed = 3
n_validation = 12

[score]
device = "cpu"
batch_size = 5
progress = false
max_lr = 1e-3
total_steps = 8

[fit]
outcome = "sup_seq"
biters = 0

[report]
biters = 19

[[models]]
name = "tiny"
checkpoints = "{run_dir / "ckpts"}"
"""
    )
    out = run_dir / "out"
    n = _recipe_module().main(["--recipe", str(recipe), "--out", str(out)], run=_run_args)
    assert n == 4
    return out


def _run_args(args: list[str]) -> None:
    _run(*args)


def test_the_pythia_recipe_spells_valid_commands(tmp_path: Path) -> None:
    from typer.main import get_command

    mod = _recipe_module()
    recipe = tomllib.loads((ROOT / "analyses" / "16_pythia_paper" / "recipe.toml").read_text())
    cmds = mod.commands(recipe, tmp_path)
    assert [c[0] for c in cmds] == ["sample"] + ["score", "fit", "report"] * 7
    group: Any = get_command(app)
    for cmd in cmds:  # every option exists and parses (nothing is run)
        group.commands[cmd[0]].make_context(cmd[0], list(cmd[1:]))
    score = cmds[1]
    assert score[score.index("--model") + 1] == "EleutherAI/pythia-70m-deduped"
    assert score[score.index("--steps") + 1] == "0:95000:1000"
    assert parse_steps("0:95000:1000").size == 96
    fit = cmds[2]
    assert fit[fit.index("--control-group") + 1] == "nevertreated"
    assert fit[fit.index("--outcome") + 1] == "sup_seq"


@pytest.mark.slow
def test_sample_writes_the_cohorts_and_provenance(run_dir: Path, pipeline: Path) -> None:
    ins, prov = read_instance_table(pipeline / "instances.parquet")
    train = ins.info["split"] == "train"
    seq = ins.info.loc[train, "seq_idx"].to_numpy(int)
    step = seq // BATCH + 1
    cohort = np.array([min(g for g in STEPS if g >= s) for s in step])
    np.testing.assert_array_equal(ins.cohort[train.to_numpy()].to_numpy(int), cohort)
    assert int(ins.never.sum()) == 12 and ins.seq_len == SEQ
    # 2 batches x 2 sequences per macro-batch (the first two macro-batches have exactly 2)
    assert sorted(pd.Series(cohort).value_counts().to_dict().items()) == [(2, 4), (4, 4), (8, 4)]
    order = np.load(run_dir / "order.npy")
    np.testing.assert_array_equal(ins.tokens[train.to_numpy()], order[seq])
    assert prov["files"]["order"][0]["size"] == (run_dir / "order.npy").stat().st_size
    assert prov["batch_size"] == BATCH and prov["seed"] == 3 and len(prov["checkpoint_steps"]) == 4


@pytest.mark.slow
def test_score_fit_report_continue_from_the_shards(run_dir: Path, pipeline: Path) -> None:
    out = pipeline / "tiny"
    man = read_manifest(out / "scores")
    assert [c["method"] for c in man["checkpoints"]] == ["fused"] * 4
    panel = read_panel(out / "panel.parquet")
    assert sorted(panel.frame["step"].unique()) == list(STEPS)
    assert panel.meta["user"]["model"] == str(run_dir / "ckpts")
    assert (out / "lr_schedule.parquet").exists()
    att = pd.read_parquet(out / "fit" / "att_gt.parquet")
    assert len(att) == 3 * 3 and np.isfinite(att.select_dtypes("number")).all().all()
    assert (out / "report.html").stat().st_size > 10_000
    body = json.loads((out / "score.json").read_text())
    ins, _ = read_instance_table(pipeline / "instances.parquet")
    assert body["instances"]["fingerprint"] == ins.fingerprint()


@pytest.mark.slow
def test_score_reports_rate_eta_resumes_and_matches_the_logits_path(
    run_dir: Path, pipeline: Path
) -> None:
    table = pipeline / "instances.parquet"
    args = ["--checkpoints", run_dir / "ckpts", "--batch-size", 5, "--device", "cpu"]
    res = _run("score", table, "--out", run_dir / "old", *args, "--no-progress",
               "--method", "logits")  # fmt: skip
    assert "tokens/s" in res.output and "ETA" in res.output and "logits" in res.output
    a = read_scores(pipeline / "tiny" / "scores", as_frame=True)
    b = read_scores(run_dir / "old" / "scores", as_frame=True)
    for col in ("logprob", "sup_seq", "acc_seq", "entr_seq", "avg_rank"):
        np.testing.assert_allclose(a[col], b[col], rtol=1e-5)
    # resumable: a second run on the same folder scores nothing again
    res = _run("score", table, "--out", pipeline / "tiny", *args, "--no-progress")
    assert "tokens/s" not in res.output  # no checkpoint was scored again
    assert read_scores(pipeline / "tiny" / "scores", as_frame=True).equals(a)


def test_sample_and_score_errors_are_two_lines(run_dir: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["sample", str(run_dir / "x.parquet")])
    assert res.exit_code == 1 and "exactly one of --order" in res.output
    res = runner.invoke(
        app, ["sample", str(run_dir / "x.parquet"), "--order", str(run_dir / "nope.npy"),
              "--batch-size", "4", "--steps", "0,2"],
    )  # fmt: skip
    assert res.exit_code == 1 and "does not exist" in res.output
    res = runner.invoke(
        app, ["sample", str(run_dir / "x.parquet"), "--order", str(run_dir / "order.npy"),
              "--batch-size", "4", "--steps", "0,2,400"],
    )  # fmt: skip
    assert res.exit_code == 1 and "--m 10 sequences per batch exceeds --batch-size 4" in res.output
    res = runner.invoke(
        app, ["sample", str(run_dir / "x.parquet"), "--order", str(run_dir / "order.npy"),
              "--batch-size", "4", "--steps", "0,2,400", "--m", "2", "--k", "1"],
    )  # fmt: skip
    assert res.exit_code == 1 and "check --batch-size" in res.output
    res = runner.invoke(app, ["score", str(run_dir / "nope.parquet"), "--out", str(run_dir)])
    assert res.exit_code == 1 and "causalmem sample" in res.output


def test_step_lists() -> None:
    assert parse_steps("pythia").size == 154 and parse_steps("pythia-1k").size == 144
    assert parse_steps("0:95000:1000")[-1] == 95000
    with pytest.raises(ValueError, match="start:stop:every"):
        parse_steps("5:1:1")
