"""What NCHW costs pruned networks on CPU: training steps in channels_last vs NCHW.

pf trains a network in NCHW on CPU when it has a stride-2 convolution of fewer than 8
input channels (``pf.train.memory_format_for``): oneDNN's channels_last weight gradient
crashes there on AVX2-only CPUs. This times SGD steps of pruned CIFAR ResNets in both
layouts, interleaved over rounds (a noisy neighbour slows both alike), and reports the
median milliseconds per step and NCHW / channels_last. On an AVX2-only CPU the
channels_last column may crash with one thread: that is the bug, so run it there only
with ``ONEDNN_MAX_CPU_ISA`` unset on an AVX-512 machine, or with 2+ threads.

    python benchmarks/bench_layout.py --arch resnet20 --ratios 0.6 0.8 --threads 1 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from pf.models import build_model
from pf.prune import prune_at_init
from pf.experiments.record import environment

LAYOUTS = {"channels_last": torch.channels_last, "nchw": torch.contiguous_format}


def step_ms(model: torch.nn.Module, layout: torch.memory_format, batch: int, steps: int) -> float:
    """Milliseconds per SGD step (forward, backward, update) of ``model`` in ``layout``."""
    model.to(memory_format=layout).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=layout)
    y = torch.randint(10, (batch,))
    for _ in range(2):  # warm-up: oneDNN primitive creation, allocator
        F.cross_entropy(model(x), y).backward()
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps * 1000


def main(argv: list[str] | None = None) -> list[dict]:
    """Print one row per (ratio, threads): ms per step in each layout and their ratio;
    return the rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet20")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.6, 0.7, 0.8])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    rows = []
    cpu = environment(torch.device("cpu"))["device_name"]
    print(f"{cpu}, torch {torch.__version__}, {args.arch}, batch {args.batch_size}, "
          f"median of {args.rounds} interleaved rounds of {args.steps} steps")
    print("| p | threads | channels_last ms/step | NCHW ms/step | NCHW / channels_last |")
    print("|---|---:|---:|---:|---:|")
    for ratio in args.ratios:
        torch.manual_seed(0)
        pruned, _ = prune_at_init(build_model(args.arch), ratio)
        for threads in args.threads:
            torch.set_num_threads(threads)
            times = {name: [] for name in LAYOUTS}
            for _ in range(args.rounds):
                for name, layout in LAYOUTS.items():
                    times[name].append(step_ms(pruned, layout, args.batch_size, args.steps))
            last, nchw = (statistics.median(times[name]) for name in LAYOUTS)
            print(f"| {ratio} | {threads} | {last:.1f} | {nchw:.1f} | {nchw / last:.2f} |")
            rows.append({"ratio": ratio, "threads": threads, "channels_last_ms": last,
                         "nchw_ms": nchw})
    return rows


if __name__ == "__main__":
    main()
