"""fp32 against bf16 on CPU: the same training in both precisions, accuracy and speed.

Whether the faster precision may be used for the real-data study (preset ``cpu``) depends
on two things this benchmark measures in one process: the final test accuracy of the
same network trained from the same initial weights on the same labeled images with the
same shuffles in fp32 and in bf16 (autocast; weights, optimiser and BatchNorm statistics
stay fp32), over several seeds, and the seconds each fit took. The schedule, batch size,
dataset and target come from the preset, so the benchmark measures what the study runs:
one round of its target training, on a seeded random labeled set.

    python benchmarks/bench_precision.py                   # preset cpu, 5,000 labels, seeds 0-2
    python benchmarks/bench_precision.py --labels 1000 --seeds 0

The two precisions alternate per seed (fp32 first for even seeds), so that a neighbour
on a shared machine slows both alike. Results: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
from pathlib import Path

import torch

from pf.experiments.config import make_config
from pf.data import load_dataset
from pf.models import build_model
from pf.experiments.record import environment, hardware_name
from pf.train import fit

PRECISIONS = ("fp32", "bf16")


def train_once(config, dataset, labels: int, seed: int, precision: str, schedule=None,
               curve_every: int = 0) -> dict:
    """Train the preset's target on ``labels`` seeded-random images in ``precision`` with
    ``schedule`` (default the preset's); its final test accuracy (fraction), the fit's
    seconds (training and test passes) and, with ``curve_every``, the test accuracy every
    that many epochs."""
    indices = torch.randperm(len(dataset.train), generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)  # the same initial weights in every variant
    model = build_model(config.arch, dataset.num_classes, dataset.in_channels)
    result = fit(model, dataset, indices[:labels], schedule or config.schedule(), device="cpu",
                 seed=seed, precision=precision, eval_batch_size=config.eval_batch_size,
                 record_curve=curve_every > 0, eval_every=max(curve_every, 1), progress=False)
    return {"seed": seed, "precision": precision, "test_accuracy": result.test_accuracy,
            "curve": dict(zip(result.curve_epochs, result.curve)),
            "seconds": result.seconds, "training_seconds": result.training_seconds,
            "images_per_second": result.images_seen / result.training_seconds}


def preset_data(preset: str, dataset: str | None):
    """The preset's config (with ``dataset`` instead of its own, when given) and its data."""
    config = make_config(preset, {"dataset": dataset} if dataset else None)
    return config, load_dataset(config.dataset)


@contextlib.contextmanager
def torch_threads(count: int):
    """torch's CPU threads set to ``count`` inside, the caller's (a test process's) after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def summary(runs: list[dict]) -> list[dict]:
    """Per precision: accuracy mean ± std (n), the median images/s and its ratio to fp32."""
    rows = []
    for precision in PRECISIONS:
        mine = [run for run in runs if run["precision"] == precision]
        accuracies = [100 * run["test_accuracy"] for run in mine]
        rows.append({"precision": precision, "n": len(mine),
                     "accuracy_mean": statistics.mean(accuracies),
                     "accuracy_std": statistics.stdev(accuracies) if len(mine) > 1 else 0.0,
                     "images_per_second": statistics.median(r["images_per_second"] for r in mine)})
    for row in rows:
        row["speed_ratio"] = row["images_per_second"] / rows[0]["images_per_second"]
    return rows


def main(argv=None) -> dict:
    """Train every seed in both precisions, print the table, and return the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--labels", type=int, default=5000, help="labeled images per fit")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", type=int, default=1, help="as each job of a --jobs 2 sweep")
    parser.add_argument("--dataset", help="instead of the preset's (tests use digits)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    config, dataset = preset_data(args.preset, args.dataset)
    runs = []
    with torch_threads(args.threads):
        for seed in (int(s) for s in args.seeds.split(",")):
            order = PRECISIONS if seed % 2 == 0 else PRECISIONS[::-1]
            runs += [train_once(config, dataset, args.labels, seed, precision)
                     for precision in order]
    rows = summary(runs)

    env = environment(torch.device("cpu"))
    print(f"# preset {args.preset}: {config.arch}, {config.dataset}, {args.labels} labels, "
          f"{config.schedule().epochs} epochs, batch {config.batch_size}; "
          f"{hardware_name(env)}, {args.threads} thread(s), torch {env['torch']}")
    print("| precision | test accuracy (%) | n | images/s | x fp32 |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['precision']} | {row['accuracy_mean']:.2f} ± {row['accuracy_std']:.2f} | "
              f"{row['n']} | {row['images_per_second']:,.0f} | {row['speed_ratio']:.2f} |")
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "environment": env,
              "runs": runs, "summary": rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
