"""The speed benchmark runs end to end (its numbers are measured, never asserted here)."""

import pytest
from conftest import load_benchmark

pytestmark = pytest.mark.slow  # runs each benchmark at a small size


def test_bench_train_times_every_runner_against_its_reference(tmp_path):
    bench = load_benchmark("bench_train")
    result = bench.main(["--data", "random", "--arch", "resnet8", "--train-images", "64",
                         "--epochs", "1", "--test-images", "32", "--pool-images", "64",
                         "--batch-size", "32", "--variants", "default,bf16", "--rounds", "2",
                         "--json", str(tmp_path / "bench.json")])
    rows = [(r["phase"], r["variant"]) for r in result["rows"]]
    assert rows == [("train", "reference (DataLoader + PIL, fp32)"), ("train", "pf default"),
                    ("train", "pf bf16"), ("score", "reference (DataLoader + PIL, fp32)"),
                    ("score", "pf default"), ("score", "pf bf16")]
    assert all(r["images_per_second"] > 0 for r in result["rows"])
    assert [r["ratio"] for r in result["rows"] if r["variant"].startswith("reference")] == [1, 1]
    assert (tmp_path / "bench.json").exists()


def test_bench_layout_times_every_variant():
    # p = 0.5 keeps 8+ channels everywhere: channels_last is safe on every CPU at any threads.
    rows = load_benchmark("bench_layout").main(["--arch", "resnet8", "--ratios", "0.5",
                                                "--threads", "1", "--batch-size", "8",
                                                "--steps", "1", "--rounds", "1", "--unsafe"])
    assert [(r["input"], r["ratio"], r["threads"]) for r in rows] == [("digits", 0.5, 1),
                                                                      ("cifar", 0.5, 1)]
    assert all(r[f"{name}_ms"] > 0 for r in rows for name in
               ("nchw", "channels_last_without_onednn", "channels_last"))


def test_bench_precision_trains_each_seed_in_both_precisions(tmp_path):
    result = load_benchmark("bench_precision").main(["--dataset", "digits", "--labels", "64",
                                            "--seeds", "0,1", "--json", str(tmp_path / "p.json")])
    assert [(r["seed"], r["precision"]) for r in result["runs"]] == [
        (0, "fp32"), (0, "bf16"), (1, "bf16"), (1, "fp32")]  # alternating per seed
    assert all(0 <= r["test_accuracy"] <= 1 and r["seconds"] > 0 for r in result["runs"])
    fp32 = result["summary"][0]
    assert (fp32["precision"], fp32["n"], fp32["speed_ratio"]) == ("fp32", 2, 1)
    assert (tmp_path / "p.json").exists()


def test_bench_convergence_trains_the_schedule_and_its_stretched_copy(tmp_path):
    out = tmp_path / "conv.jsonl"
    rows = load_benchmark("bench_convergence").main(["--dataset", "digits", "--labels", "64",
                                                     "--factors", "1,2", "--curve-every", "30",
                                                     "--json", str(out)])
    assert [(r["factor"], r["epochs"]) for r in rows] == [(1, 60), (2, 120)]
    assert rows[1]["lr_schedule"] == [[24, 0.1], [96, 0.001]]  # every piece's epochs doubled
    assert all(0 <= r["test_accuracy"] <= 1 and r["lr_shape"] == "linear" for r in rows)
    assert len(out.read_text().splitlines()) == 2
