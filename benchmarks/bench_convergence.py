"""Is the preset's schedule long enough? Train its target with the schedule and with the
schedule stretched (every piece's epochs times a factor), on the same random labels.

The converged study (preset ``converged``) needs targets trained to convergence: a
ResNet-20 on 10,000 random CIFAR-10 labels should gain less than a point from doubling
its epochs. This trains the preset's target from the same initial weights on the same
seeded random labels once per factor (the schedule's shape kept, its pieces' epochs
scaled), in the preset's precision, and prints each final test accuracy with the
test accuracy every ``--curve-every`` epochs. Run factors as separate processes to use
both cores; each appends its result to ``--json``.

    python benchmarks/bench_convergence.py --factors 1 --json conv.jsonl &
    python benchmarks/bench_convergence.py --factors 2 --json conv.jsonl

Results: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_precision import preset_data, torch_threads, train_once  # noqa: E402  (a sibling)

from pf.experiments.record import environment, hardware_name  # noqa: E402


def stretched(schedule, factor: int):
    """``schedule`` with every piece's epochs multiplied by ``factor`` (rates and shape kept)."""
    return dataclasses.replace(schedule, segments=tuple((epochs * factor, lr)
                                                        for epochs, lr in schedule.segments))


def main(argv=None) -> list[dict]:
    """Train once per factor, print one line each, append them to ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="converged")
    parser.add_argument("--labels", type=int, default=10000, help="seeded random labels")
    parser.add_argument("--factors", default="1,2", help="epoch multipliers of the schedule")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="as each job of a --jobs 2 sweep")
    parser.add_argument("--curve-every", type=int, default=5, help="test every this many epochs")
    parser.add_argument("--dataset", help="instead of the preset's (tests use digits)")
    parser.add_argument("--json", type=Path, help="append one JSON line per factor here")
    args = parser.parse_args(argv)

    config, dataset = preset_data(args.preset, args.dataset)
    env = environment(torch.device("cpu"))
    rows = []
    with torch_threads(args.threads):
        for factor in (int(f) for f in args.factors.split(",")):
            schedule = stretched(config.schedule(), factor)
            run = train_once(config, dataset, args.labels, args.seed, config.precision,
                             schedule, args.curve_every)
            row = {"preset": args.preset, "factor": factor, "epochs": schedule.epochs,
                   "lr_schedule": [list(piece) for piece in schedule.segments],
                   "lr_shape": schedule.shape, "labels": args.labels, "threads": args.threads,
                   "cpu": hardware_name(env), "torch": env["torch"], **run}
            print(f"{config.arch} {config.dataset} {args.labels} labels seed {args.seed}: "
                  f"{schedule.epochs} epochs ({schedule.shape} {row['lr_schedule']}) -> "
                  f"{100 * run['test_accuracy']:.2f} % in {run['seconds']:.0f} s "
                  f"({run['images_per_second']:.0f} images/s, {row['cpu']})", flush=True)
            rows.append(row)
            if args.json:
                with args.json.open("a") as out:
                    out.write(json.dumps(row) + "\n")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
