"""The ``pf`` command line.

    pf run --preset demo --out runs/demo            # one experiment -> runs/demo/metrics.json
    pf run --preset paper --set seed=1 --set dataset=imagefolder:/data/cifar10-jpeg.tar.gz
    pf config --preset fast --set budgets=[1000,5000]   # print the resolved config
    pf flops --arch resnet56 --prune 0.5 0.7            # parameters and MACs per image
    pf sweep notebooks/sweeps/demo.yaml                 # a grid of notebook runs, resumable
    pf figures results/demo                             # every figure and table from runs

A bad parameter stops before any work with one line naming it and what is allowed,
exit status 2, and nothing written.
"""

from __future__ import annotations

import argparse
import json
import sys

from pf.data import DatasetNotFound
from pf.experiments.config import PRESETS, ConfigError, make_config, parse_assignment
from pf.experiments.record import METRICS_FILE, hardware_name

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
    run.add_argument("--out", default=None,
                     help="run directory (default: runs/<preset>/seed<seed>)")
    run.add_argument("--keep-checkpoint", action="store_true",
                     help="keep OUT/checkpoint.pt once the run has finished (a run saves one "
                     "after every round, and started again continues from it)")
    run.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="progress bars (default: only on a terminal)")
    with_config_options(commands.add_parser("config", help="print the resolved configuration"))
    flops = commands.add_parser("flops", help="parameters and per-image MACs of a network, "
                                "dense and pruned at init")
    flops.add_argument("--arch", default="resnet56", help="a model name (default: resnet56)")
    flops.add_argument("--prune", type=float, nargs="*", default=[], metavar="P",
                       help="pruning ratios to count too, each in [0, 1)")
    flops.add_argument("--importance", default="l2", help="channel importance for pruning")
    flops.add_argument("--input", default="3x32x32", help="one image's CxHxW (default: 3x32x32)")
    flops.add_argument("--classes", type=int, default=10, help="classifier outputs (default: 10)")

    sweep = commands.add_parser("sweep", help="run a YAML grid of experiments with papermill "
                                "(finished runs are skipped)")
    sweep.add_argument("file", help="sweep file, e.g. notebooks/sweeps/demo.yaml")
    sweep.add_argument("--results", default="results", help="results root (default: results); "
                       "runs go to RESULTS/<sweep>/<run id>/")
    sweep.add_argument("--executor", choices=("local", "slurm"), default="local",
                       help="local process pool (default) or a Slurm job array via submitit")
    sweep.add_argument("--per-gpu", type=int, default=1, metavar="K",
                       help="runs at a time on each visible GPU (local), or per Slurm task "
                       "sharing its GPU (default: 1)")
    sweep.add_argument("--jobs", type=int, default=None, help="local workers (default: one per "
                       "visible GPU, else 1)")
    sweep.add_argument("--keep-checkpoints", action="store_true",
                       help="keep each run's checkpoint.pt once it has finished")
    sweep.add_argument("--dry-run", action="store_true",
                       help="list the runs, their state and planned cost (pf.experiments.cost)")
    sweep.add_argument("--partition", default=None, help="slurm: partition")
    sweep.add_argument("--timeout-min", type=int, default=24 * 60, help="slurm: minutes per run")
    sweep.add_argument("--cpus-per-task", type=int, default=8,
                       help="slurm: CPUs per run (default: 8)")
    sweep.add_argument("--mem-gb", type=float, default=None,
                       help="slurm: host memory per run in GB (default: the partition's "
                       "default); each run holds its dataset as uint8 (CIFAR 0.2 GB, "
                       "Tiny-ImageNet 1.4 GB)")
    sweep.add_argument("--gpus", type=int, default=1,
                       help="slurm: GPUs per run (default: 1; 0 on a CPU partition)")
    sweep.add_argument("--parallel", type=int, default=32, help="slurm: runs at once (array limit)")

    figures = commands.add_parser("figures",
                                  help="every figure and the main table from stored runs")
    figures.add_argument("results", nargs="?", default="results",
                         help="folder holding runs (metrics.json files); default: results")
    figures.add_argument("--out", default=None, help="output folder (default: RESULTS/figures)")
    return parser


def _figures(args) -> int:
    """``pf figures``: the tables, then each figure's files or why it was not drawn."""
    from pathlib import Path

    from pf.analysis.figures import make_figures

    if not Path(args.results).is_dir():
        raise ConfigError(f"results: no folder {args.results}; run pf sweep or pf run first")
    made = make_figures(args.results, args.out or Path(args.results) / "figures")
    for name, files in made.items():  # the tables first, as Markdown
        if name.endswith("table") and isinstance(files, list):
            sweep = f"{name.split('/')[0]}: " if "/" in name else ""
            print(sweep + files[1].read_text())
    for name, files in made.items():
        print(f"{name}: {files if isinstance(files, str) else ', '.join(map(str, files))}")
    return 0


def _sweep(args) -> int:
    """``pf sweep``: exit status 1 when a run failed (each failure is listed and kept)."""
    from pf.sweep import run_sweep

    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"jobs: must be a positive integer, got {args.jobs}")
    if args.per_gpu < 1:
        raise ConfigError(f"per-gpu: must be a positive integer, got {args.per_gpu}")
    if args.cpus_per_task < 1:
        raise ConfigError(f"cpus-per-task: must be a positive integer, got {args.cpus_per_task}")
    if args.mem_gb is not None and not args.mem_gb > 0:
        raise ConfigError(f"mem-gb: must be a positive number of GB, got {args.mem_gb}")
    if args.gpus < 0:
        raise ConfigError(f"gpus: must be 0 or more, got {args.gpus}")
    # submitit's generic names: it translates them for Slurm (mem_gb -> --mem in MB). A
    # parameter left out leaves the partition's default (no GPU request at all for --gpus 0).
    slurm = {"timeout_min": args.timeout_min, "cpus_per_task": args.cpus_per_task,
             "tasks_per_node": 1, "slurm_array_parallelism": args.parallel}
    if args.gpus:
        slurm["gpus_per_node"] = args.gpus
    if args.mem_gb is not None:
        slurm["mem_gb"] = args.mem_gb
    if args.partition:
        slurm["slurm_partition"] = args.partition
    records = run_sweep(args.file, args.results, args.executor, args.jobs, args.dry_run,
                        slurm=slurm, per_gpu=args.per_gpu,
                        keep_checkpoints=args.keep_checkpoints)
    failed = [r for r in records if r["status"] == "failed"]
    if not args.dry_run:
        done = sum(r["status"] in ("done", "skipped") for r in records)
        print(f"{done} of {len(records)} runs finished, {len(failed)} failed")
    return 1 if failed else 0


def _flops_table(args) -> str:
    """The ``pf flops`` report: one line per network, unit stated."""
    from pf.flops import UNIT, flop_counter_macs, forward_macs, fvcore_default_macs, parameter_count
    from pf.models import MODELS, build_model
    from pf.prune import IMPORTANCES, prune_at_init

    if args.arch not in MODELS:
        raise ConfigError(f"arch: unknown model {args.arch!r}; choose one of {', '.join(MODELS)}")
    if args.importance not in IMPORTANCES:
        raise ConfigError(f"importance: {args.importance!r} is not one of {', '.join(IMPORTANCES)}")
    if bad := [p for p in args.prune if not 0 <= p < 1]:
        raise ConfigError(f"prune: each ratio must lie in [0, 1), got {bad[0]}")
    try:
        shape = tuple(int(n) for n in args.input.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1 or args.classes < 1:
        raise ConfigError(f"input/classes: expected --input CxHxW like 3x32x32 and --classes >= 1, "
                          f"got {args.input} and {args.classes}")
    dense = build_model(args.arch, args.classes, shape[0])
    networks = [(args.arch, dense)]
    networks += [(f"{args.arch} p={p}", prune_at_init(dense, p, args.importance, shape)[0])
                 for p in args.prune]
    dense_macs = forward_macs(dense, shape)
    lines = [f"per {args.input} image, {UNIT}; conv+linear is the papers' count",
             f"{'network':<18}{'params':>10}{'conv+linear':>14}{'x dense':>9}"
             f"{'fvcore default':>16}{'FlopCounterMode/2':>19}"]
    for name, model in networks:
        macs = forward_macs(model, shape)
        lines.append(f"{name:<18}{parameter_count(model):>10,}{macs:>14,}"
                     f"{macs / dense_macs:>9.3f}"
                     f"{fvcore_default_macs(model, shape):>16,}"
                     f"{flop_counter_macs(model, shape):>19,}")
    return "\n".join(lines)


def _summary(record) -> str:
    """Per round: labeled count (and, for data pruning, rate and selection), accuracy, time;
    for data pruning also how the samples were scored and, with a reference, how well."""
    pruning = record.scores is not None
    lines = [f"{'labeled':>8}  " + ("rate  selection  " if pruning else "")
             + f"{'test acc':>8}  {'train s':>8}"]
    for step in record.rounds:
        how = f"{step.removed_fraction:>4}  {step.selection:>9}  " if pruning else ""
        lines.append(f"{step.labeled:>8}  {how}{100 * step.target.test_accuracy:>7.2f}%"
                     f"  {step.seconds['target_training']:>8.1f}")
    if pruning:
        scores = record.scores
        lines.append(f"scores: {scores.label} ({scores.scored} of {scores.train_size} samples "
                     f"scored)")
        if scores.pearson is not None:
            cached = " (read from reference_cache)" if scores.reference_cached else ""
            lines.append(f"vs the full run{cached} on the {scores.train_size - scores.scored}"
                         f" unseen samples: Pearson {scores.pearson:.3f}, "
                         f"Spearman {scores.spearman:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pf`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "flops":
            print(_flops_table(args))
            return 0
        if args.command == "sweep":
            return _sweep(args)
        if args.command == "figures":
            return _figures(args)
        overrides = dict(parse_assignment(text) for text in args.assignments)
        config = make_config(args.preset, overrides)
        if args.command == "config":
            print(json.dumps(config.to_dict(), indent=1))
            return 0
        from pf.experiments.run import run_experiment  # heavy imports only when running

        out = args.out or f"runs/{args.preset}/seed{config.seed}"
        record = run_experiment(config, out, progress=args.progress,
                                keep_checkpoint=args.keep_checkpoint)
    except (ConfigError, DatasetNotFound) as error:
        print(f"pf: error: {error}", file=sys.stderr)
        return 2
    from pf.distributed import finish, is_main

    reports = is_main()  # under torchrun, rank 0 reports the run
    finish()
    if not reports:
        return 0
    print(_summary(record))
    print(f"wrote {out}/{METRICS_FILE} ({record.seconds_total:.0f} s on "
          f"{hardware_name(record.environment)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
