"""Crash leftovers and unreadable files around panel I/O (issue 13, items 9 and 10)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from causalmem.errors import PanelFileError, PanelSchemaError
from causalmem.panel import Panel, read_panel, simulate_panel, write_panel
from lmecon.atomic import STALE_AFTER_S, atomic_path, remove_stale_temps


@pytest.fixture(scope="module")
def panel() -> Panel:
    return simulate_panel(n_never=5, units_per_cohort=2).to_panel()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_write_panel_removes_orphans_of_killed_writers(panel: Panel, tmp_path: Path) -> None:
    target = tmp_path / "p.parquet"
    dead = tmp_path / f".p.parquet.{_dead_pid()}-abcd1234.tmp"  # a writer killed by kill -9
    legacy = tmp_path / ".p.parquet.k2j4h5g6.tmp"  # old name without pid, an hour old
    dead.write_bytes(b"PAR1 half")
    legacy.write_bytes(b"PAR1 half")
    _age(legacy, 2 * STALE_AFTER_S)
    write_panel(panel, target)
    assert not dead.exists() and not legacy.exists()
    assert read_panel(target).equals(panel)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.parquet"]


def test_temp_files_of_live_writers_and_other_targets_are_kept(
    panel: Panel, tmp_path: Path
) -> None:
    live = tmp_path / f".p.parquet.{os.getppid()}-abcd1234.tmp"  # a running process
    fresh_legacy = tmp_path / ".p.parquet.zzzz9999.tmp"  # unknown owner, just written
    other = tmp_path / f".p.parquet.x.{_dead_pid()}-abcd1234.tmp"  # target p.parquet.x
    folder = tmp_path / ".p.parquet.qwer5678.tmp"  # a folder (checkpoints use them)
    for f in (live, fresh_legacy, other):
        f.write_bytes(b"x")
    folder.mkdir()
    write_panel(panel, tmp_path / "p.parquet")
    assert live.exists() and fresh_legacy.exists() and other.exists() and folder.is_dir()
    assert remove_stale_temps(tmp_path / "p.parquet") == []


def test_interrupted_write_keeps_the_old_file_and_leaves_nothing(
    panel: Panel, tmp_path: Path
) -> None:
    target = write_panel(panel, tmp_path / "p.parquet")
    before = target.read_bytes()
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"PAR1 half written")
        assert tmp.name.startswith(f".p.parquet.{os.getpid()}-")
        assert remove_stale_temps(target) == []  # our own write in progress is kept
        raise RuntimeError("killed")
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.parquet"]


def test_truncated_parquet_is_named_with_a_fix(panel: Panel, tmp_path: Path) -> None:
    good = write_panel(panel, tmp_path / "p.parquet")
    bad = tmp_path / "cut.parquet"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(PanelFileError, match=r"cut\.parquet.*truncated.*write_panel"):
        read_panel(bad)


def test_csv_given_as_a_panel_says_how_to_convert(panel: Panel, tmp_path: Path) -> None:
    csv = tmp_path / "panel.csv"
    panel.frame.to_csv(csv, index=False)
    with pytest.raises(PanelFileError, match=r"panel\.csv.*read_csv.*Panel\.from_frame"):
        read_panel(csv)
    renamed = tmp_path / "panel_csv.parquet"  # CSV content behind a parquet name
    renamed.write_bytes(csv.read_bytes())
    with pytest.raises(PanelFileError, match="CSV"):
        read_panel(renamed)


def test_missing_folder_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.parquet.*does not exist"):
        read_panel(tmp_path / "nope.parquet")
    with pytest.raises(PanelFileError, match="is a folder"):
        read_panel(tmp_path)
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(PanelFileError, match="not a parquet file"):
        read_panel(junk)
    plain = tmp_path / "plain.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(plain)
    with pytest.raises(PanelSchemaError, match="no causalmem metadata"):
        read_panel(plain)


def test_kill_9_during_write_panel_then_rewrite(panel: Panel, tmp_path: Path) -> None:
    target = tmp_path / "p.parquet"
    code = (
        "import sys, time\n"
        "from lmecon.atomic import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    tmp.write_bytes(b'PAR1 half')\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"writing"
    orphans = list(tmp_path.glob(".p.parquet.*.tmp"))
    assert len(orphans) == 1
    write_panel(panel, target)  # the writer is alive: its file is kept
    assert orphans[0].exists()
    proc.kill()
    proc.wait()
    assert orphans[0].exists()  # kill -9 leaves the orphan behind
    write_panel(panel, target)
    assert not orphans[0].exists()
    assert read_panel(target).equals(panel)
