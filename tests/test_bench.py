"""The meta-step benchmark in CI form: tiny sizes, CPU, ratios printed, gradient agreement asserted.

The references (higher, learn2learn) are optional: each test that needs one is skipped with a
message when it cannot be imported; mllib's loop and vmap forms are always compared.
"""
import json
from dataclasses import replace

import pytest
import torch

from mllib import bench
from mllib.bench import BenchSpec, check_gradients, make_step, reference_status, rel_error, run_benchmark
from mllib.models import ConvLearner

TINY = BenchSpec(meta_batch=2, filters=8, query=2, steps=2, warmup=1)
LOADED = [name for name, s in reference_status().items() if s["loaded"]]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_reference_model_is_the_same_function():
    torch.manual_seed(0)
    model = ConvLearner(5, filters=8).double()
    ref = bench.reference_model(model)
    x = torch.rand(6, 1, 28, 28, dtype=torch.float64)
    assert [n for n, _ in ref.named_parameters()] == [n for n, _ in model.named_parameters()]
    torch.testing.assert_close(ref(x), model(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("algo", ["maml", "fomaml", "metasgd", "anil", "protonet", "reptile"])
def test_loop_and_vmap_agree_in_float64(algo):
    rows = check_gradients(replace(TINY, algo=algo), ["mllib-loop", "mllib-vmap"], tasks=2)
    assert len(rows) == 1 and rows[0]["impl"] == "mllib-vmap"
    assert rows[0]["ok"], rows


@pytest.mark.parametrize("reference", ["higher", "learn2learn"])
@pytest.mark.parametrize("algo", ["maml", "fomaml"])
def test_references_compute_mllibs_meta_gradient(reference, algo):
    if reference not in LOADED:
        pytest.skip(f"{reference} not importable: {reference_status()[reference]['reason']}")
    rows = check_gradients(replace(TINY, algo=algo), ["mllib-loop", reference], tasks=2)
    print(f"{algo} {reference} vs mllib-loop: rel err {rows[0]['rel_err']:.1e}")
    assert rows[0]["ok"], rows


def test_first_and_second_order_differ():
    # the check must be able to fail: a first-order gradient is not a second-order one
    second = make_step(replace(TINY, algo="maml"), torch.float64)[0]()
    first = make_step(replace(TINY, algo="fomaml"), torch.float64)[0]()
    assert rel_error(first, second) > 1e-4


def test_check_gradients_flags_a_wrong_gradient(monkeypatch):
    real = bench.gradients.make_step

    def wrong(spec, dtype=torch.float32):
        step, batch = real(spec, dtype)
        if spec.impl != "mllib-vmap":
            return step, batch
        return (lambda: {k: g * 1.001 for k, g in step().items()}), batch

    monkeypatch.setattr(bench.gradients, "make_step", wrong)
    rows = check_gradients(TINY, ["mllib-loop", "mllib-vmap"], tasks=2)
    assert not rows[0]["ok"]


def test_reduced_benchmark_runs_and_reports_ratios(capsys):
    result = run_benchmark(algos=("maml", "fomaml"), forms=("loop", "vmap"), references=bench.REFERENCES,
                           meta_batch=2, filters=8, query=2, rounds=2, warmup=1, isolate=False,
                           check_tasks=2, log=print)
    out = capsys.readouterr().out
    print(bench.format_table(result))
    assert result["gradients_agree"]
    impls = {(r["algo"], r["impl"]) for r in result["results"]}
    for algo in ("maml", "fomaml"):
        assert {(algo, "mllib-loop"), (algo, "mllib-vmap")} <= impls
        assert {(algo, ref) for ref in LOADED} <= impls
    for row in result["results"]:
        assert row["n"] == 2 and 0 < row["min_s"] <= row["median_s"] and row["peak_rss_mb"] > 0
    assert len(result["ratios"]) == (2 if LOADED else 0)
    for ratio in result["ratios"]:
        assert ratio["ratio_median"] > 0 and ratio["mllib"] == "mllib-loop"
    assert set(result["references"]) == set(bench.REFERENCES)
    assert "references:" in out
    json.dumps(result)  # JSON-ready


def test_worker_subprocess_steps_and_reports_its_own_peak_rss():
    runner = bench.WorkerRunner(replace(TINY, steps=1, warmup=0))
    runner.warmup()
    seconds = runner.step()
    out = runner.finish()
    assert seconds > 0 and out["peak_rss_mb"] >= out["setup_rss_mb"] > 0 and out["peak_mem_mb"] is None
    assert runner.proc.returncode == 0


def test_time_config_in_process():
    out = bench.time_config(replace(TINY, steps=2, warmup=0))
    assert len(out["times"]) == 2 and out["peak_rss_mb"] >= out["setup_rss_mb"] > 0


def test_bad_specs_are_value_errors():
    with pytest.raises(ValueError, match="impl"):
        BenchSpec(impl="jax").validate()
    with pytest.raises(ValueError, match="reference implements only"):
        BenchSpec(impl="higher", algo="reptile").validate()
    with pytest.raises(ValueError, match="meta_batch"):
        BenchSpec(meta_batch=0).validate()
    with pytest.raises(ValueError, match="references"):
        run_benchmark(references=("torchmeta",), meta_batch=1)


def test_cli_quick_json(capsys):
    from mllib.__main__ import main
    code = main(["bench", "--quick", "--no-isolate", "--json", "--algos", "maml", "--forms", "loop",
                 "--references", "none", "--check-tasks", "1"])
    out = capsys.readouterr().out
    result = json.loads(out)
    assert code == 0 and result["kind"] == "mllib-bench" and result["config"]["meta_batch"] == 2
    assert [r["impl"] for r in result["results"]] == ["mllib-loop"]


def test_ratios_are_computed_within_each_round():
    from mllib.bench import quartiles, round_ratios
    r = round_ratios([1.0, 1.0, 3.0, 0.5], [[2.0, 1.0, 1.0, 1.0], [1.0, 2.0, 6.0, 2.0]])
    assert r["per_round"] == [1.0, 1.0, 3.0, 0.5]           # over the fastest reference of each round
    assert (r["ratio_median"], r["ratio_worst"], r["ratio_best"], r["rounds"]) == (1.0, 3.0, 0.5, 4)
    assert (r["ratio_q25"], r["ratio_q75"]) == quartiles([1.0, 1.0, 3.0, 0.5])[::2] == (0.875, 1.5)
    assert r["ratio_of_medians"] == 1.0   # median 1.0 over the faster median (1.0 vs 2.0): the older summary
    with pytest.raises(ValueError, match="one per round"):
        round_ratios([1.0, 2.0], [[1.0]])


def test_reduced_benchmark_records_rounds_and_load(monkeypatch):
    result = run_benchmark(algos=("maml",), forms=("loop",), references=(), meta_batch=1, filters=4, query=1,
                           rounds=3, warmup=0, isolate=False, check_tasks=1)
    assert result["config"]["rounds"] == 3 and result["results"][0]["n"] == 3
    assert "loadavg_start" in result["host"] and "loadavg_end" in result["host"]
    with pytest.raises(ValueError, match="rounds"):
        run_benchmark(algos=("maml",), forms=("loop",), references=(), rounds=0)


def test_cli_rounds_and_the_older_steps_repeats_spelling(capsys):
    from mllib.__main__ import main
    base = ["bench", "--no-isolate", "--json", "--algos", "maml", "--forms", "loop", "--references", "none",
            "--check-tasks", "1", "--meta-batch", "1", "--filters", "4", "--query", "1", "--warmup", "0"]
    assert main(base + ["--steps", "2", "--repeats", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["rounds"] == 4
    assert main(base + ["--rounds", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["rounds"] == 3
    assert main(base + ["--rounds", "3", "--steps", "2"]) == 2
    assert "not both" in capsys.readouterr().err
