"""One-step pruning at init against Torch-Pruning's iterative schedule (``steps``).

The authors' code prunes with ``iterative_steps=5``, the five steps back to back with no
training between; pf prunes in one step by default. For every architecture, pruning
ratio and importance this prunes the same untrained network (``torch.manual_seed(0)``)
with ``steps=1`` and with ``--steps`` (5), and reports the widths per stage, parameters,
forward MACs (fvcore, convolutions and linear layers), which fraction of the kept output
channels the two prunings share, per stage (``stream``: the stem and the convolutions
that write the residual stream; ``inner``: the first convolution of every block), and
the wall-clock of ``prune_at_init`` (graph tracing and the channel-map replay included).

    python benchmarks/bench_prune_steps.py                 # all 24 settings, CPU, ~1.5 min
    python benchmarks/bench_prune_steps.py --arch preact56 --ratio 0.7 --json out.json

2-core Xeon development CPU (load ~1), torch 2.14.1, Torch-Pruning 1.6.0, ``--repeats 3``:
in all 24 settings 5 steps give every convolution the same width as one step, hence the
same parameters and MACs (preact56: 8/16/32, 6/12/25, 4/9/19, 3/6/12 at p = 0.5 ... 0.8;
215,186 / 129,191 / 73,756 / 30,871 parameters; 31.55 / 18.27 / 9.67 / 4.49 M MACs), but
other channels: 1 and 5 steps share 80 / 78 / 66 / 53 % of preact56's kept channels
under ``l2`` (87 / 75 / 61 / 46 % under ``group_l2``; 46-87 % over all three nets), the
less the higher p. Under ``l2`` the stage-1 residual stream of post-activation nets
(rooted at the stem, whose inputs are never pruned) is the only group kept identically
in every setting. Pruning preact56 (tracing, pruning, channel-map replay and check) took
0.37 s in one step and 0.86 s in five (medians over p and importance).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from pf.flops import forward_macs, parameter_count
from pf.models import build_model
from pf.prune import prune_at_init
from pf.experiments.record import environment

ARCHS = ("preact56", "resnet56", "resnet20")  # the authors' selector, pf's target, a small one
RATIOS = (0.5, 0.6, 0.7, 0.8)  # the authors' p on CIFAR
IMPORTANCES = ("l2", "group_l2")  # the authors' L2 magnitude, Torch-Pruning's default
INPUT_SHAPE = (3, 32, 32)


def _group(conv_name: str) -> str:
    """The stage and role of a convolution: stem, stageK stream or stageK inner."""
    if "." not in conv_name:
        return "stem"
    stage = f"stage{conv_name.split('.')[0].removeprefix('layer')}"
    return f"{stage} inner" if conv_name.endswith("conv1") else f"{stage} stream"


def _kept_out_channels(channel_map: dict) -> dict[str, list[int]]:
    """Dense output-channel indices every convolution kept."""
    kept = {}
    for conv in channel_map["widths"]:
        indices = channel_map["tensors"][f"{conv}.weight"]["indices"][0]
        dense_out = channel_map["tensors"][f"{conv}.weight"]["dense_shape"][0]
        kept[conv] = list(range(dense_out)) if indices is None else indices
    return kept


def _timed_prune(dense, ratio: float, importance: str, steps: int, repeats: int):
    """``prune_at_init`` and the median of ``repeats`` wall-clock timings, in seconds."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        pruned, channel_map = prune_at_init(dense, ratio, importance=importance, steps=steps)
        seconds.append(time.perf_counter() - start)
    return pruned, channel_map, statistics.median(seconds)


def compare(arch: str, ratio: float, importance: str, steps: int, repeats: int) -> dict:
    """Widths, costs and kept-channel overlap of ``steps=1`` against ``steps``."""
    torch.manual_seed(0)
    dense = build_model(arch)
    row = {"arch": arch, "ratio": ratio, "importance": importance, "steps": steps}
    kept = {}
    for n in (1, steps):
        pruned, channel_map, seconds = _timed_prune(dense, ratio, importance, n, repeats)
        widths = {}
        for conv, width in channel_map["widths"].items():
            widths.setdefault(_group(conv).split()[0], set()).add(width)
        row[f"widths_{n}"] = {stage: sorted(w) for stage, w in widths.items()}
        row[f"conv_widths_{n}"] = channel_map["widths"]
        row[f"params_{n}"] = parameter_count(pruned)
        row[f"macs_{n}"] = forward_macs(pruned, INPUT_SHAPE)
        row[f"seconds_{n}"] = seconds
        kept[n] = _kept_out_channels(channel_map)
    shared, total, identical, convs = {}, {}, {}, {}
    for conv, one_step in kept[1].items():
        group = _group(conv)
        shared[group] = shared.get(group, 0) + len(set(one_step) & set(kept[steps][conv]))
        total[group] = total.get(group, 0) + len(one_step)
        identical[group] = identical.get(group, 0) + (sorted(one_step) == sorted(kept[steps][conv]))
        convs[group] = convs.get(group, 0) + 1
    row["same_widths"] = row["conv_widths_1"] == row[f"conv_widths_{steps}"]
    row["shared_kept"] = {g: shared[g] / total[g] for g in total}
    row["identical_convs"] = {g: f"{identical[g]}/{convs[g]}" for g in convs}
    row["shared_kept_all"] = sum(shared.values()) / sum(total.values())
    return row


def _stage_order(name: str) -> tuple:
    """Sort key: the stem first, then the stages (and their groups) in order."""
    return (name != "stem", name)


def _stage_widths(widths: dict) -> str:
    """``stem/stage1/stage2/stage3`` widths; a stage with several widths shows them a|b."""
    return "/".join("|".join(map(str, widths[s])) for s in sorted(widths, key=_stage_order))


def print_table(rows: list[dict], steps: int) -> None:
    """Markdown tables: widths and costs, then kept-channel overlap per stage group."""
    print(f"| arch | p | importance | widths stem/s1/s2/s3, 1 step | {steps} steps "
          f"| params 1 / {steps} | MACs 1 / {steps} (M) | prune s, 1 / {steps} "
          f"| kept channels shared |")
    print("|---|---:|---|---|---|---|---|---|---:|")
    for r in rows:
        print(f"| {r['arch']} | {r['ratio']} | {r['importance']} | {_stage_widths(r['widths_1'])} "
              f"| {_stage_widths(r[f'widths_{steps}'])} "
              f"| {r['params_1']:,} / {r[f'params_{steps}']:,} "
              f"| {r['macs_1'] / 1e6:.2f} / {r[f'macs_{steps}'] / 1e6:.2f} "
              f"| {r['seconds_1']:.2f} / {r[f'seconds_{steps}']:.2f} "
              f"| {100 * r['shared_kept_all']:.1f} % |")
    groups = sorted(rows[0]["shared_kept"], key=_stage_order)
    print(f"\nShare of the kept output channels that 1 and {steps} steps have in common "
          "(convolutions with identical sets):\n")
    print("| arch | p | importance | " + " | ".join(groups) + " |")
    print("|---|---:|---|" + "---:|" * len(groups))
    for r in rows:
        cells = [f"{100 * r['shared_kept'][g]:.0f} % ({r['identical_convs'][g]})" for g in groups]
        print(f"| {r['arch']} | {r['ratio']} | {r['importance']} | " + " | ".join(cells) + " |")


def main() -> None:
    """Run every requested setting and print the tables (and write JSON if asked)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", nargs="+", default=ARCHS)
    parser.add_argument("--ratio", nargs="+", type=float, default=RATIOS)
    parser.add_argument("--importance", nargs="+", default=IMPORTANCES)
    parser.add_argument("--steps", type=int, default=5, help="compared against 1 step")
    parser.add_argument("--repeats", type=int, default=1, help="timings per setting (median)")
    parser.add_argument("--json", help="also write the rows and the environment here")
    args = parser.parse_args()
    rows = [compare(arch, ratio, importance, args.steps, args.repeats)
            for arch in args.arch for ratio in args.ratio for importance in args.importance]
    print_table(rows, args.steps)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "environment": environment(torch.device("cpu"))}, f, indent=1)


if __name__ == "__main__":
    main()
