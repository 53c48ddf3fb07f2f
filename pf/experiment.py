"""One experiment: train the target at every labeling budget and record everything.

For now every budget's labeled set is a seeded random subset; the sets are nested (each
budget extends the previous one, as rounds of active learning do), and the target is
trained from scratch at each budget with the same seeded initialisation. Budgets are
TOTAL labeled counts. The record is ``metrics.json`` (see ``pf.results``) plus
``labeled.json``, the labeling order from which every round's set can be rebuilt.

    metrics = run_experiment(make_config("demo"), out_dir="runs/demo")
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from pf.config import Config, ConfigError, check_budgets
from pf.data import load_dataset
from pf.flops import UNIT, forward_macs
from pf.models import build_model
from pf.results import METRICS_FILE, environment, write_json
from pf.train import fit, resolve_device

__all__ = ["SCHEMA_VERSION", "LABELED_FILE", "run_experiment"]

SCHEMA_VERSION = 1
LABELED_FILE = "labeled.json"


def run_experiment(config: Config, out_dir: str | Path | None = None,
                   progress: bool | None = None) -> dict:
    """Run ``config`` and return its metrics; with ``out_dir``, also write them there.

    Everything that can be checked is checked before training starts (the budgets
    against the dataset's size, the device), and nothing is written until the run has
    finished, so a bad parameter leaves no trace.
    """
    start = time.perf_counter()
    device = resolve_device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for but no CUDA device is available; use auto or cpu")
    dataset = load_dataset(config.dataset, config.data_dir or None)
    check_budgets(config.budgets, len(dataset.train))
    dataset = dataset.to(device)

    # The labeling order: the first b entries are the labeled set at budget b.
    order = torch.randperm(len(dataset.train), generator=torch.Generator().manual_seed(config.seed))
    image_shape = tuple(dataset.train.images.shape[1:])
    schedule = config.schedule()
    rounds, macs = [], None
    for index, budget in enumerate(tqdm(config.budgets, desc="budgets", disable=None
                                        if progress is None else not progress)):
        selection_start = time.perf_counter()
        labeled = order[:budget].to(device)
        selection_seconds = time.perf_counter() - selection_start

        torch.manual_seed(config.seed)
        target = build_model(config.arch, dataset.num_classes, dataset.in_channels)
        macs = macs or forward_macs(target, image_shape)
        result = fit(target, dataset, labeled, schedule, device=device, seed=config.seed + index,
                     kd_weight=config.kd_weight, kd_temperature=config.kd_temperature,
                     precision=config.precision, compile=config.compile,
                     eval_batch_size=config.eval_batch_size, progress=progress,
                     desc=f"target @ {budget}")
        rounds.append({
            "round": index,
            "labeled": budget,
            "selection": "random",
            "selector": None,  # no selector network: the labeled sets are random
            "target": {
                "arch": config.arch,
                "test_accuracy": result.test_accuracy,
                "curve": result.curve,
                "train_loss": result.train_loss,
            },
            "seconds": {"selection": selection_seconds, "target_training": result.seconds},
            "macs": {
                "selection": 0,
                "target_training": 3 * macs * result.images_seen,  # forward + 2x backward
                "target_evaluation": macs * len(dataset.test) * schedule.epochs,
            },
        })

    metrics = {
        "schema": SCHEMA_VERSION,
        "config": config.to_dict(),
        "seed": config.seed,
        "dataset": {"name": dataset.name, "train_size": len(dataset.train),
                    "test_size": len(dataset.test), "num_classes": dataset.num_classes,
                    "image_shape": list(image_shape)},
        "accuracy": "test split, final epoch, fraction in [0, 1]",
        "macs_unit": UNIT,
        "forward_macs_per_image": {config.arch: macs},
        "rounds": rounds,
        "labeled_file": LABELED_FILE,
        "seconds_total": time.perf_counter() - start,
        "environment": environment(device),
    }
    if out_dir is not None:
        out_dir = Path(out_dir)
        write_json(out_dir / LABELED_FILE, {"budgets": config.budgets,
                                            "order": order[:config.budgets[-1]].tolist()})
        write_json(out_dir / METRICS_FILE, metrics)  # last: its presence marks a finished run
    return metrics
