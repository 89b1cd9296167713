"""The Ray backend on a local CPU Ray instance writes the same shards as the sequential runner."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("torch")
ray = pytest.importorskip("ray")

from causalmem.scoring.checkpoints import (  # noqa: E402
    Checkpoint,
    DuplicateWeightsError,
    local_checkpoints,
)
from causalmem.scoring.ray_backend import score_ray  # noqa: E402
from causalmem.scoring.runner import read_manifest, score  # noqa: E402
from tests.causalmem.builders import make_checkpoints, make_instances  # noqa: E402


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}},
    )
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_backend_matches_sequential_and_resumes(local_ray: None, tmp_path: Path) -> None:
    cks = make_checkpoints(tmp_path / "ck")
    ins = make_instances()
    ref = score(cks, ins, tmp_path / "seq", batch_size=4, progress=False).frame
    out = tmp_path / "ray"
    # start with the first checkpoint scored sequentially: Ray resumes the rest
    score(cks[:1], ins, out, batch_size=4, progress=False, as_frame=True)
    got = score_ray(cks, ins, out, batch_size=4, num_cpus_per_task=1, progress=False).frame
    pd.testing.assert_frame_equal(got, ref)
    m = read_manifest(out)
    assert m["n_shards"] == 3 and m["rows"] == len(ref)
    a = pd.read_parquet(tmp_path / "seq" / "shards" / "step-000000010.parquet")
    b = pd.read_parquet(out / "shards" / "step-000000010.parquet")
    pd.testing.assert_frame_equal(a, b)

    # duplicate weights: refused, the duplicate's rows are not stored, the others are
    dup = tmp_path / "dup"
    for s in (0, 5, 10):
        shutil.copytree(Path(cks[0].model).parent / f"step{s}", dup / f"step{s}")
    shutil.copytree(dup / "step10", dup / "step30")
    dcks: list[Checkpoint] = list(local_checkpoints(dup))
    with pytest.raises(DuplicateWeightsError):
        score_ray(dcks, ins, tmp_path / "dout", batch_size=4, progress=False)
    # Which other shards finished before the refusal depends on task timing; what must hold:
    # the duplicate pair is never stored together and no checkpoint is stored twice.
    steps = [r["checkpoint"]["step"] for r in read_manifest(tmp_path / "dout")["checkpoints"]]
    assert len(steps) == len(set(steps)) and set(steps) < {0, 5, 10, 30}
    assert not {10, 30} <= set(steps)
    # Explicitly allowed, the run resumes and completes every checkpoint exactly once.
    full = score_ray(
        dcks, ins, tmp_path / "dout", batch_size=4, progress=False, allow_duplicate_weights=True
    ).frame
    assert sorted(full["step"].unique()) == [0, 5, 10, 30]
    assert not full.duplicated(["unit", "step"]).any()
