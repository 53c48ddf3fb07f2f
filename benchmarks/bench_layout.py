"""What the AVX2 crash fix costs pruned networks on CPU, against the other safe fix.

pf runs a network in NCHW on CPU when it has a stride-2 convolution of fewer than 8 input
channels (``pf.layout.memory_format_for``), with every weight and input in exactly that
layout (``pf.layout``): oneDNN's channels_last weight gradient crashes there on AVX2-only
CPUs with one thread. The other safe choice keeps channels_last and turns oneDNN off for
those networks (torch's own convolution kernels). This times SGD steps of pruned CIFAR
ResNets on digits-sized (1x8x8, batch 64) and CIFAR-sized (3x32x32) inputs in three
variants, interleaved over rounds (a noisy neighbour slows all alike), and reports the
median milliseconds per step and each variant / pf's. The ``channels_last`` column is the
unsafe reference and is timed only with ``--unsafe``: on an AVX2-only CPU (or with
``ONEDNN_MAX_CPU_ISA=AVX2``) with one thread it crashes the process, which is the bug.

    python benchmarks/bench_layout.py --arch resnet20 --ratios 0.6 0.8 --threads 1 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from pf.layout import exact, place
from pf.models import build_model
from pf.prune import prune_at_init
from pf.experiments.record import environment, hardware_name

CPU = torch.device("cpu")
# name: (memory format, oneDNN on); pf's choice first, the unsafe reference last.
VARIANTS = {"nchw": (torch.contiguous_format, True),
            "channels_last_without_onednn": (torch.channels_last, False),
            "channels_last": (torch.channels_last, True)}
INPUTS = {"digits": ((1, 8, 8), 64), "cifar": ((3, 32, 32), 128)}  # image shape, batch


def step_ms(model: torch.nn.Module, variant: str, image_shape: tuple, batch: int,
            steps: int) -> float:
    """Milliseconds per SGD step (forward, backward, update) of ``model`` in ``variant``."""
    layout, onednn = VARIANTS[variant]
    place(model, CPU, layout).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = exact(torch.randn(batch, *image_shape), layout)
    y = torch.randint(10, (batch,))
    with torch.backends.mkldnn.flags(enabled=onednn):
        for _ in range(2):  # warm-up: oneDNN primitive creation, allocator
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
        start = time.perf_counter()
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
        return (time.perf_counter() - start) / steps * 1000


def main(argv: list[str] | None = None) -> list[dict]:
    """Print one row per (input, ratio, threads): ms per step of each variant and its ratio
    to pf's; return the rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet20")
    parser.add_argument("--inputs", nargs="+", choices=INPUTS, default=list(INPUTS))
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.6, 0.7, 0.8])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=0, help="0: each input's own")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--unsafe", action="store_true",
                        help="also time channels_last with oneDNN (crashes on AVX2, 1 thread)")
    args = parser.parse_args(argv)
    variants = [name for name in VARIANTS if args.unsafe or name != "channels_last"]
    rows = []
    cpu = hardware_name(environment(CPU))
    print(f"{cpu}, torch {torch.__version__}, {args.arch}, median of {args.rounds} "
          f"interleaved rounds of {args.steps} steps")
    print("| input | p | threads | " + " | ".join(f"{name} ms/step" for name in variants)
          + " | " + " | ".join(f"{name} / nchw" for name in variants[1:]) + " |")
    print("|---|---|---:|" + "---:|" * (2 * len(variants) - 1))
    for data in args.inputs:
        image_shape, batch = INPUTS[data]
        batch = args.batch_size or batch
        for ratio in args.ratios:
            torch.manual_seed(0)
            dense = build_model(args.arch, 10, image_shape[0])
            pruned, _ = prune_at_init(dense, ratio, input_shape=image_shape)
            for threads in args.threads:
                torch.set_num_threads(threads)
                times = {name: [] for name in variants}
                for _ in range(args.rounds):
                    for name in variants:
                        times[name].append(step_ms(pruned, name, image_shape, batch, args.steps))
                ms = {name: statistics.median(times[name]) for name in variants}
                print(f"| {data} | {ratio} | {threads} | "
                      + " | ".join(f"{ms[name]:.1f}" for name in variants) + " | "
                      + " | ".join(f"{ms[name] / ms['nchw']:.2f}" for name in variants[1:]) + " |")
                rows.append({"input": data, "ratio": ratio, "threads": threads,
                             **{f"{name}_ms": ms[name] for name in variants}})
    return rows


if __name__ == "__main__":
    main()
