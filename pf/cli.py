"""The ``pf`` command line.

    pf run --preset demo --out runs/demo            # one experiment -> runs/demo/metrics.json
    pf run --preset paper --set seed=1 --set dataset=imagefolder:/data/cifar10-jpeg.tar.gz
    pf config --preset fast --set budgets=[1000,5000]   # print the resolved config

A bad parameter stops before any work with one line naming it and what is allowed,
exit status 2, and nothing written.
"""

from __future__ import annotations

import argparse
import json
import sys

from pf.config import PRESETS, ConfigError, make_config, parse_assignment
from pf.data import DatasetNotFound

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line, like every other bad input."""

    def error(self, message: str):
        self.exit(2, f"pf: error: {message} (see pf --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pf", description="Reproduce PruneFuse and its neighbours.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def with_config_options(command):
        command.add_argument("--preset", default="paper", help=f"one of {', '.join(PRESETS)} "
                             "(default: paper)")
        command.add_argument("--set", dest="assignments", action="append", default=[],
                             metavar="KEY=VALUE", help="override one parameter; repeatable")
        return command

    run = with_config_options(commands.add_parser(
        "run", help="run one experiment and write OUT/metrics.json"))
    run.add_argument("--out", default=None, help="run directory (default: runs/<preset>/seed<seed>)")
    run.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="progress bars (default: only on a terminal)")
    with_config_options(commands.add_parser("config", help="print the resolved configuration"))
    return parser


def _summary(metrics: dict) -> str:
    lines = [f"{'labeled':>8}  {'test acc':>8}  {'train s':>8}"]
    for round_ in metrics["rounds"]:
        lines.append(f"{round_['labeled']:>8}  {100 * round_['target']['test_accuracy']:>7.2f}%"
                     f"  {round_['seconds']['target_training']:>8.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pf`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        overrides = dict(parse_assignment(text) for text in args.assignments)
        config = make_config(args.preset, overrides)
        if args.command == "config":
            print(json.dumps(config.to_dict(), indent=1))
            return 0
        from pf.experiment import run_experiment  # heavy imports only when running

        out = args.out or f"runs/{args.preset}/seed{config.seed}"
        metrics = run_experiment(config, out, progress=args.progress)
    except (ConfigError, DatasetNotFound) as error:
        print(f"pf: error: {error}", file=sys.stderr)
        return 2
    print(_summary(metrics))
    print(f"wrote {out}/metrics.json ({metrics['seconds_total']:.0f} s on "
          f"{metrics['environment']['device_name']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
