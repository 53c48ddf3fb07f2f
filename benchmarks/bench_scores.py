"""Cost of recording training dynamics (pf.scores.DynamicsRecorder) and of the scores.

Training: ``pf.train.fit`` without a recorder, with a full-softmax fp32 recorder, with a
true-class-only bf16 recorder and with the lean recorders pf.experiments.data_pruning uses
for TDDS and EL2N (``DynamicsRecorder.for_score``), same data, initial weights and seed
(same work), run in interleaved rounds so that load on a shared machine hits every variant
alike; the median over rounds is reported as a ratio to the run without a recorder.
Evaluation is off (``record_curve=False``) so the ratio is against the training steps alone.
Since that ratio drowns in noise on a busy machine, ``record`` is also timed on its own, per
step, against the mean step time. Scores: wall-clock of DU, TDDS, EL2N and forgetting counts
on a random history.

    python benchmarks/bench_scores.py                   # CPU: resnet20, 640 images x 2 epochs
    python benchmarks/bench_scores.py --train-images 25000 --epochs 2 --rounds 5    # GPU

Data: as ``bench_train.py`` (real CIFAR-10 from ../shared/data, else random images).

2-core Xeon development CPU, 2 threads, torch 2.15, shared with other jobs (load ~5),
ResNet-20, batch 128, 1,280 CIFAR-10 images x 1 epoch, median of 5 rounds: fit took 0.98x
(full softmax, fp32) and 0.93x (true class, bf16) the time without a recorder, i.e. no
difference beyond the noise; ``record`` alone took 0.2-0.4 ms per step, under 0.2 % of
a training step even unloaded (234 ms per step at bench_train.py's 547 images/s; about
3 s per step in this loaded run). Scores on a (50, 20000, 10) history: DU 0.23 s,
TDDS 0.70 s, EL2N 0.04 s, forgetting 0.05 s. Not yet measured on a GPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from bench_train import load_benchmark_data
from pf.models import build_model
from pf.experiments.record import environment, hardware_name
from pf.scores import DynamicsRecorder, dynamic_uncertainty, el2n, forgetting_counts, tdds
from pf.train import Schedule, fit, resolve_device

RECORDERS = {  # variant name -> recorder factory
    "no recorder": lambda: None,
    "full softmax, fp32": lambda: DynamicsRecorder(),
    "true class, bf16": lambda: DynamicsRecorder(keep=("true_probs", "correct"),
                                                 dtype=torch.bfloat16),
    # the lean records pf.experiments.data_pruning uses for TDDS and EL2N: they compute per step
    "tdds shifts (lean)": lambda: DynamicsRecorder.for_score("tdds"),
    "el2n per epoch (lean)": lambda: DynamicsRecorder.for_score("el2n"),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_record(recorder: DynamicsRecorder, labels: torch.Tensor, classes: int, batch_size: int,
                device: torch.device, steps: int = 500) -> float:
    """Seconds one ``recorder.record`` call takes for a batch, averaged over ``steps``."""
    recorder.begin(2, labels, classes)  # epoch 1 has a previous epoch: TDDS's shifts compute
    g = torch.Generator(device=device).manual_seed(0)
    logits = torch.randn(batch_size, classes, generator=g, device=device)
    idx = torch.randperm(len(labels), generator=g, device=device)[:batch_size]
    recorder.record(0, idx, logits, labels[idx])  # warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        recorder.record(1, idx, logits, labels[idx])
    _sync(device)
    return (time.perf_counter() - start) / steps


def time_scores(epochs: int, samples: int, classes: int, device: torch.device) -> dict[str, float]:
    """Seconds of each score on a random (epochs, samples, classes) softmax history."""
    g = torch.Generator(device=device).manual_seed(0)
    probs = torch.softmax(torch.randn(epochs, samples, classes, generator=g, device=device), 2)
    labels = torch.randint(classes, (samples,), generator=g, device=device)
    correct = (probs.argmax(2) == labels).to(torch.int8)
    jobs = {"dynamic_uncertainty": lambda: dynamic_uncertainty(probs, labels),
            "tdds": lambda: tdds(probs), "el2n": lambda: el2n(probs, labels),
            "forgetting_counts": lambda: forgetting_counts(correct)}
    seconds = {}
    for name, job in jobs.items():
        job()  # warm-up
        _sync(device)
        start = time.perf_counter()
        job()
        _sync(device)
        seconds[name] = time.perf_counter() - start
    return seconds


def main(argv=None) -> dict:
    """Time fit with and without recorders and the scores; print tables, return results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet20")
    parser.add_argument("--train-images", type=int, default=640)
    # 2 epochs at least: TDDS's shifts compare consecutive epochs
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--score-shape", default="50,20000,10", help="epochs,samples,classes")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    host = load_benchmark_data(test_images=256)
    dataset = host.to(device)
    indices = torch.randperm(len(host.train), generator=torch.Generator().manual_seed(0))
    indices = indices[:args.train_images].to(device)
    torch.manual_seed(0)
    initial = build_model(args.arch, host.num_classes, host.in_channels).state_dict()
    schedule = Schedule(((args.epochs, 0.05),), batch_size=args.batch_size)

    def run(recorder) -> float:
        model = build_model(args.arch, host.num_classes, host.in_channels)
        model.load_state_dict(initial)
        return fit(model, dataset, indices, schedule, device=device, precision=args.precision,
                   record_curve=False, progress=False, recorder=recorder).seconds

    run(None)  # warm-up: allocator, kernel selection
    seconds = {name: [] for name in RECORDERS}
    for _ in range(args.rounds):
        for name, make in RECORDERS.items():
            seconds[name].append(run(make()))
    median = {name: statistics.median(s) for name, s in seconds.items()}
    steps = args.epochs * -(-args.train_images // args.batch_size)
    step_seconds = {name: time_record(make(), dataset.train.labels, host.num_classes,
                                      args.batch_size, device)
                    for name, make in RECORDERS.items() if name != "no recorder"}
    score_seconds = time_scores(*map(int, args.score_shape.split(",")), device)

    env = environment(device)
    print(f"# {args.arch}, batch {args.batch_size}, {host.name}, {args.train_images} images x "
          f"{args.epochs} epochs, median of {args.rounds} rounds; {hardware_name(env)}, "
          f"{env['cpu_threads']} threads, torch {env['torch']}")
    print("| recorder | seconds (median) | x no recorder |")
    print("|---|---:|---:|")
    base = median["no recorder"]
    for name, s in median.items():
        print(f"| {name} | {s:.2f} | {s / base:.3f} |")
    print(f"\n# record() alone, per step of {args.batch_size} (mean step without a recorder: "
          f"{1e3 * base / steps:.1f} ms)")
    print("| recorder | ms per step | share of a step |")
    print("|---|---:|---:|")
    for name, s in step_seconds.items():
        print(f"| {name} | {1e3 * s:.3f} | {s / (base / steps):.2%} |")
    print(f"\n# scores on a random history of shape ({args.score_shape})")
    print("| score | seconds |")
    print("|---|---:|")
    for name, s in score_seconds.items():
        print(f"| {name} | {s:.3f} |")
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "environment": env,
              "dataset": host.name, "fit_seconds": seconds,
              "ratio": {name: s / base for name, s in median.items()},
              "record_seconds_per_step": step_seconds, "step_seconds": base / steps,
              "score_seconds": score_seconds}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
