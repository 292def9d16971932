"""The benchmark suite end to end at --quick size; runs only with SERVEKIT_BENCH=1 (it takes minutes).

Checks that every file was produced and every request succeeded (the suite's exit code), never the
numbers; of bench.mme_split's, only that each column measured what it names.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    os.environ.get("SERVEKIT_BENCH") != "1",
    reason="SKIPPED: the benchmark suite (python -m bench --quick, ~3 min) runs only with SERVEKIT_BENCH=1",
)


@pytest.mark.timeout(900)
def test_quick_run_produces_every_file_and_no_failed_request(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.fail("SERVEKIT_BENCH=1 but wrk is missing: apt-get install -y wrk (or ./build.sh bench)")
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=840)
    assert done.returncode == 0, f"python -m bench --quick failed:\n{done.stdout[-4000:]}\n{done.stderr[-8000:]}"
    for name in ("results.json", "table.md", "throughput.png", "p99.png", "memory.png", "load_time.png",
                 "streaming.png"):
        assert (tmp_path / name).stat().st_size > 0, name


@pytest.mark.timeout(300)
def test_http_floor_measures_both_servers() -> None:
    if shutil.which("wrk") is None:
        pytest.fail("SERVEKIT_BENCH=1 but wrk is missing: apt-get install -y wrk (or ./build.sh bench)")
    done = subprocess.run([sys.executable, "-m", "bench.http_floor", "--seconds", "1", "--rounds", "1"], cwd=REPO,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]
    rows = [line.split("|")[1].strip() for line in done.stdout.splitlines()[2:]]
    assert rows == ["raw", "uvicorn"], done.stdout


# AWS's stack's virtualenv is installed on first use (the quick run above installs it first in CI).
@pytest.mark.timeout(1500)
def test_mme_split_measures_the_hop_the_pool_aws_and_the_no_hop_path() -> None:
    if shutil.which("wrk") is None:
        pytest.fail("SERVEKIT_BENCH=1 but wrk is missing: apt-get install -y wrk (or ./build.sh bench)")
    done = subprocess.run([sys.executable, "-m", "bench.mme_split", "--models", "2", "--seconds", "1", "--rounds", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=1440)
    assert done.returncode == 0, done.stderr[-4000:]
    table, _, ratios = done.stdout.partition("\n\n")
    rows = {cells[0]: [float(c) for c in cells[1:]]
            for cells in ([c.strip() for c in line.split("|")[1:-1]] for line in table.splitlines()[2:])}
    assert list(rows) == ["2", "2, pool", "2, AWS's stack", "1, no hop"], done.stdout
    for label, (rps, _, _, workers_user, workers_system, in_process) in rows.items():
        assert rps > 0 and in_process > 0, done.stdout
        # the workers run the model: at least half of what invoke costs in one process
        assert workers_user + workers_system > in_process / 2, (label, done.stdout)
    # a front that hands every request over is measured (servekit's MME, AWS's MMS Java process);
    # the pool's front answers no invocation; the single-model path has none
    assert rows["2"][1] > 0 and rows["2, AWS's stack"][1] > 0, done.stdout
    assert rows["2, pool"][1] < rows["2, pool"][3] / 10 and rows["1, no hop"][1] == 0, done.stdout
    assert [line.partition(":")[0] for line in ratios.splitlines()] == ["2", "2, pool"]
    assert all(float(v) > 0 for line in ratios.splitlines() for v in line.split(":")[1].split(" times")[0].split(","))
