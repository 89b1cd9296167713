"""Families of models on shared instances: config, building from panel files, fitting, findings."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from analyses.wiring.family import analysis_cli, analysis_from_cli
from causalmem.workflows.family import (
    FamilyConfig,
    FamilyMember,
    analyse_family,
    build_family,
    findings_markdown,
    fit_family,
    load_family,
    pythia_lr_schedule,
)
from tests.causalmem.builders import COHORTS, TOTAL, family_frame, write_family_files


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("family")
    toml = write_family_files(root, family_frame())
    build_family(FamilyConfig.from_toml(toml), root / "out", log=lambda m: None)
    return root / "out"


def test_pythia_lr_schedule_matches_pythia() -> None:
    s = pythia_lr_schedule(1e-3)
    assert s["step"].iloc[-1] == 143_000 and s["step"].diff().iloc[1] == 100
    assert s["lr"].max() == pytest.approx(1e-3)
    assert s["lr"].iloc[-1] == pytest.approx(1e-4)  # floor 0.1 x max
    assert s.loc[s["step"] == 700, "lr"].item() == pytest.approx(1e-3 * 700 / 1430)  # warm-up
    one = pythia_lr_schedule(2.0, total_steps=100, warmup_frac=0.1, every=1)
    # half-way through the cosine: floor + (1 - floor) / 2 of the peak
    assert one.loc[one["step"] == 55, "lr"].item() == pytest.approx(2.0 * 0.55)


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="either panel"):
        FamilyMember(name="x", n_layer=2)
    with pytest.raises(ValueError, match="exclusive"):
        FamilyMember(name="x", n_layer=2, d_model=64, n_head=2, panel="p.parquet")
    with pytest.raises(ValueError, match="at least two"):
        FamilyConfig(models=(FamilyMember(name="a", panel="a.parquet"),))
    with pytest.raises(ValueError, match="unique"):
        FamilyConfig(models=(FamilyMember(name="a", panel="a"), FamilyMember(name="a", panel="b")))
    with pytest.raises(ValueError, match=r"unknown \[family.lab\] keys \['bogus'\]"):
        FamilyConfig(
            models=(FamilyMember(name="a", panel="a"), FamilyMember(name="b", panel="b")),
            lab={"bogus": 1},
        )
    t = tmp_path / "f.toml"
    t.write_text(
        '[family]\nsteps = 3\n[[family.models]]\nname = "a"\npanel = "a"\n'
        '[[family.models]]\nname = "b"\npanel = "b"\n'
    )
    with pytest.raises(ValueError, match=r"unknown \[family\] keys \['steps'\]"):
        FamilyConfig.from_toml(t)


def test_lab_members_share_the_data_settings() -> None:
    cfg = FamilyConfig(
        models=(
            FamilyMember(name="s", n_layer=1, d_model=64, n_head=2, lr=4e-3),
            FamilyMember(name="l", n_layer=3, d_model=160, n_head=4, lr=2e-3),
        ),
        lab={"steps": 60, "seed": 5, "k": 3},
    )
    a, b = (cfg.lab_config(m) for m in cfg.models)
    assert (a.n_layer, a.d_model, a.lr) == (1, 64, 4e-3) and (b.n_layer, b.lr) == (3, 2e-3)
    shared = ("steps", "seed", "k", "m", "batch_size", "seq_len", "corpus", "checkpoint_every")
    assert all(getattr(a, f) == getattr(b, f) for f in shared)
    assert a.steps == 60 and a.seed == 5


def test_build_family_from_files(planted: Path, tmp_path: Path) -> None:
    fam = load_family(planted)
    assert fam.names == ("tiny", "small", "big")  # ordered by n_params
    tab = fam.tidy()
    assert tab["source"].tolist() == ["file"] * 3
    assert tab["epoch_end"].tolist() == [250.0] * 3
    assert tab["n_units"].tolist() == [6 * 30 + 80] * 3
    lr = fam.lr_table()
    assert lr.groupby("model")["lr"].max().to_dict() == pytest.approx(
        {"tiny": 4e-3, "small": 3e-3, "big": 2e-3}
    )
    assert fam.duplicate_checkpoints().empty
    # a member whose units differ cannot join the family (no joint bootstrap)
    frame = family_frame(n_per=30)
    toml = write_family_files(tmp_path, frame)
    bad = pd.read_csv(tmp_path / "big.csv")
    bad = bad[bad["unit"] != 0]
    bad.to_csv(tmp_path / "big.csv", index=False)
    with pytest.raises(ValueError, match="same instances"):
        build_family(FamilyConfig.from_toml(toml), tmp_path / "out", log=lambda m: None)


def test_fit_family_views(planted: Path) -> None:
    fit = fit_family(load_family(planted), "logprob", biters=49, seed=1)
    assert fit.sign == 1
    cells = fit.cells()
    assert set(cells["model"]) == {"tiny", "small", "big"}
    inst = fit.instantaneous()
    assert len(inst) == 3 * COHORTS.size and inst["lr_mean"].notna().all()
    # the first macro-batch of 'tiny' averages its own schedule over steps 1..50
    sched = pythia_lr_schedule(4e-3, TOTAL, every=1)
    want = sched.loc[sched["step"] <= 50, "lr"].mean()
    got = inst[(inst["model"] == "tiny") & (inst["group"] == 50)]["lr_mean"].item()
    assert got == pytest.approx(want)
    resid = fit.residual()
    assert set(resid["at"]) == {250.0} and resid["group"].max() == 250
    assert (fit.persistent()["event_time"] >= 0).all()
    assert len(fit.pretrends()) == 3 and len(fit.glance()) == 3


def test_findings_hold_where_planted(planted: Path) -> None:
    an = analyse_family(load_family(planted), "logprob", biters=199, seed=3)
    f = an.findings
    assert f is not None
    assert f["finding_i"]["holds"] and f["finding_ii"]["holds"] and f["finding_iii"]["holds"]
    pm = pd.DataFrame(f["per_model"])
    # planted ratios: instantaneous memorisation scales 1 : 1.5 : 2.2 across sizes
    ratio = pm["instantaneous_mean"] / pm["instantaneous_mean"].iloc[0]
    assert ratio.tolist() == pytest.approx([1.0, 1.5, 2.2], rel=0.1)
    assert min(f["finding_ii"]["corr_instantaneous_lr"].values()) > 0.9
    assert f["finding_iii"]["paper_fig6_variant"] == "all"
    corr = an.correlations()
    assert set(corr["cells"]) == {"all", "post_first_epoch"}
    assert corr.loc[corr["cells"] == "all", "reproduces_paper_fig6"].all()
    md = findings_markdown(f)
    assert "(i) Larger models memorise more" in md and "**holds**" in md


def test_findings_are_not_forced(tmp_path: Path) -> None:
    # Same effect in every model and no LR dependence: (i) and (ii) must not hold.
    frame = family_frame(scales=(1.5, 1.5, 1.5), lr_driven=False, seed=4)
    toml = write_family_files(tmp_path, frame)
    fam = build_family(FamilyConfig.from_toml(toml), tmp_path / "out", log=lambda m: None)
    f = analyse_family(fam, "logprob", biters=99, seed=2).findings
    assert f is not None
    assert not f["finding_i"]["holds"]
    assert not f["finding_ii"]["holds"]
    assert f["finding_iii"]["holds"]  # identical profiles are perfectly predictable


def test_analysis_cli_defaults_and_overrides(tmp_path: Path) -> None:
    here = tmp_path / "03_profiles"
    args = analysis_cli("doc", here, argv=[])
    assert args.out == Path("out") / "03_profiles"
    assert args.config == here / "config.toml"
    assert args.family is None
    args = analysis_cli("doc", here, argv=["--out", "o", "--config", "c.toml", "--family", "fam"])
    assert (args.out, args.config, args.family) == (Path("o"), Path("c.toml"), Path("fam"))
    no_family = analysis_cli("doc", here, family=False, argv=[])
    assert not hasattr(no_family, "family")
    with pytest.raises(SystemExit):
        analysis_cli("doc", here, family=False, argv=["--family", "fam"])


def test_analysis_from_cli_runs_the_toml(planted: Path, tmp_path: Path) -> None:
    here = tmp_path / "06_x"
    here.mkdir()
    (here / "config.toml").write_text("[analysis]\nbiters = 99\nseed = 2\n")
    out, an = analysis_from_cli("doc", here, argv=["--family", str(planted)])
    assert out == Path("out") / "06_x"
    assert an.fit.family.names == load_family(planted).names
    assert an.findings is not None
