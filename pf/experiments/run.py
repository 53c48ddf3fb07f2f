"""One experiment: a method's active-learning run over the budgets (or a data-pruning
run), recorded.

``run_experiment`` checks what it can before any work (the budgets against the dataset's
size, the device), runs ``pf.experiments.active_learning.run_active_learning`` (for
``experiment=data_pruning``: ``pf.experiments.data_pruning.run_data_pruning``) and, only once
the run has finished, writes the run folder that ``pf.experiments.record`` describes:
the indices each round added (their union up to round r is the labeled set at
budgets[r], so that another target can be trained on the same data) or kept, a
data-pruning run's scores, PruneFuse's channel maps (each round's selector record names
the map it used) and, last, metrics.json.

A data-pruning run writes the same record. Its rounds are one per (removed fraction,
selection), with ``labeled`` = ``added`` = the kept count, ``removed_fraction`` and
``selection`` (score | moderate | ccs | random); the record gains a ``scores`` block
(score, source, subset size, extrapolation, correlations with a full run or null);
``selected.json`` holds each round's kept indices (the whole training set of that round,
not an increment) and ``scores.json`` the N scores (and the full run's, when computed).

    record = run_experiment(make_config("demo"), out_dir="runs/demo")
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from pf.experiments.active_learning import run_active_learning
from pf.experiments.checkpoint import Checkpoint
from pf.data import load_dataset
from pf.distributed import is_main, start, world_size
from pf.experiments import DATA_PRUNING
from pf.experiments.config import ConfigError, RunConfig, check_sizes
from pf.experiments.data_pruning import run_data_pruning
from pf.experiments.record import (CHECKPOINT_FILE, SCORES_FILE, SELECTED_FILE, DatasetRecord,
                                   RunRecord, channel_map_file, environment)
from pf.prune import save_channel_map
from pf.provenance import dirty_warning
from pf.storage import write_json
from pf.train import resolve_device, set_determinism

__all__ = ["run_experiment"]


def run_experiment(config: RunConfig, out_dir: str | Path | None = None,
                   progress: bool | None = None, keep_checkpoint: bool = False) -> RunRecord:
    """Run ``config`` and return its ``RunRecord``; with ``out_dir``, also write the run
    folder there.

    A bad parameter raises ``ConfigError`` (or ``DatasetNotFound``) before training
    starts. With ``out_dir``, the run saves a checkpoint there after every round and, if
    it finds one of the same config, continues after its last round
    (``pf.experiments.checkpoint``); the record files are written once the run has
    finished, and then the checkpoint is deleted unless ``keep_checkpoint``.
    """
    checkpoint = Checkpoint(None if out_dir is None else Path(out_dir) / CHECKPOINT_FILE,
                            config.to_dict())
    device = resolve_device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for but no CUDA device is available; "
                          "use auto or cpu")
    device = start(device)  # under torchrun: join its processes (pf.distributed)
    if world_size() > 1 and (config.experiment == DATA_PRUNING or config.compile):
        raise ConfigError("torchrun: several processes run active learning without compile "
                          "only; start data pruning or compile=true as one process")
    if not is_main():
        progress = False
    set_determinism(config.deterministic, device)
    if config.compile:
        # Compiled code is cached per function (ResNet.forward, the blocks' forward) across
        # every network of the process, and each new width, mode or shape is a recompile:
        # a notebook session running a few networks hit dynamo's recompile limit (8) and
        # then trained eager without a word. One run needs about 4 (selector and target,
        # train and eval), so each run starts from an empty cache.
        torch._dynamo.reset()
    dataset = load_dataset(config.dataset, config.data_dir or None, side=config.image_size)
    check_sizes(config, len(dataset.train))
    pruning = config.experiment == DATA_PRUNING
    dataset = dataset.to(device)
    warning = dirty_warning()  # after the checks: a bad parameter stays a one-line error
    if warning and is_main():
        print(warning, file=sys.stderr)
    if pruning:
        run = run_data_pruning(config, dataset, progress=progress, checkpoint=checkpoint)
    else:
        run = run_active_learning(config, dataset, progress=progress, checkpoint=checkpoint)
    channel_maps = run.get("channel_maps", {})  # PruneFuse only
    channel_map = channel_maps.get(channel_map_file())  # theta_p's, pruned at init

    record = RunRecord(
        config=config.to_dict(), seed=config.seed, experiment=config.experiment,
        method=None if pruning else config.method,
        # The configured name (e.g. cifar10_jpeg), not where the images were read from.
        dataset=DatasetRecord(name=config.dataset, train_size=len(dataset.train),
                              test_size=len(dataset.test), num_classes=dataset.num_classes,
                              image_shape=list(dataset.train.image_shape)),
        networks=run["networks"], rounds=run["rounds"], environment=environment(device),
        seconds_total=checkpoint.seconds(), resumed_at_rounds=checkpoint.resumed_at,
        channel_map_file=channel_map_file() if channel_map else None,
        pruned_widths=channel_map["widths"] if channel_map else None,
        scores=run["scores"] if pruning else None,
        scores_file=SCORES_FILE if pruning else None)
    if out_dir is not None and is_main():  # under torchrun, one process writes
        out_dir = Path(out_dir)
        if pruning:
            write_json(out_dir / SELECTED_FILE, {
                "removed_fractions": [r.removed_fraction for r in run["rounds"]],
                "selections": [r.selection for r in run["rounds"]], "kept": run["kept"]})
            write_json(out_dir / SCORES_FILE, {
                "score": config.score, "source": config.score_source,
                "scored_indices": run["scored_indices"], "scores": run["score_values"],
                "reference_scores": run["reference_scores"]})
        else:
            write_json(out_dir / SELECTED_FILE,
                       {"budgets": config.budgets, "added": run["selected"]})
        for name, saved in channel_maps.items():
            save_channel_map(saved, out_dir / name)
        record.write(out_dir)  # last: its presence marks a finished run
        if not keep_checkpoint:
            checkpoint.remove()
    return record
