"""benchmarks/gpu_check.sh rehearsed on the CPU with tiny sizes, so the prepared GPU check cannot rot:
every command and flag it uses exists, the runs are published and the summary is written."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
TINY_BENCH = "--filters 4 --query 1 --meta-batch 2 --warmup 0 --check-tasks 1 --references none --no-isolate"
TINY_TRAIN = ("--filters 4 --query 1 --meta-batch 2 --val-every 2 --val-tasks 4 --test-query 1 "
              "--inner-steps 1 --inner-steps-test 1")


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("tar") is None, reason="needs bash and tar")
def test_gpu_check_rehearsal_on_cpu(tmp_path, synthetic_omniglot_root):
    out = tmp_path / "out"
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLLIB_")}
    env.update(
        PY=sys.executable, GPU_CHECK_DEVICE="cpu", RESULTS=str(tmp_path / "results"), OUT=str(out),
        MLLIB_DATA=str(synthetic_omniglot_root), MLLIB_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1",
        MLLIB_ALLOW_PARTIAL_DATA="1",  # the synthetic Omniglot lacks most alphabets
        MLLIB_DATA_CUSTOM="1",  # the synthetic zips are a custom copy of Omniglot
        BENCH_STEPS="1", BENCH_ARGS=TINY_BENCH, TRAIN_ARGS=TINY_TRAIN,
        TRAIN_SECONDS_5W="0.5", TRAIN_SECONDS_20W="0.5",
    )
    proc = subprocess.run(["bash", str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = tmp_path / "results"
    summary = json.loads((results / "summary.json").read_text())
    assert summary["env"]["device"] == "cpu"
    assert summary["bench_5w1s"]["gradients_agree"] and summary["bench_20w1s"]["gradients_agree"]
    assert set(summary["bench_5w1s"]["median_s"]) == {"maml/mllib-loop", "maml/mllib-vmap",
                                                      "fomaml/mllib-loop", "fomaml/mllib-vmap"}
    for name, ways in (("maml_omniglot_5w1s", 5), ("maml_omniglot_20w1s", 20)):
        card = json.loads((results / "checkpoints" / f"{name}.json").read_text())
        assert card["ways"] == ways and card["tasks"] == 600 and card["profile"].startswith("full (")
        assert "--max-seconds 0.5" in card["command"]
        assert (results / "checkpoints" / f"{name}.pt").is_file()
        assert summary[name]["accuracy"] == card["accuracy"]
    assert {p.name for p in out.iterdir()} == {"gpu_check.tgz", "summary.json"}
    listing = subprocess.run(["tar", "tzf", str(out / "gpu_check.tgz")], capture_output=True, text=True).stdout
    assert "checkpoints/maml_omniglot_20w1s.pt" in listing
    assert not [line for line in listing.splitlines() if line.endswith("/checkpoint.pt")]
