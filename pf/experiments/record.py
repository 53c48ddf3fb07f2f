"""The run record: what a finished run writes into its folder, and how it is read back.

One run folder holds:

- ``metrics.json``: the ``RunRecord`` (config, dataset, networks, one ``RoundRecord`` per
  round with its display label, accuracies, curves, MACs and seconds per phase, the
  environment); written last and atomically, so its presence marks a finished run;
- ``selected.json``: the indices each round added (active learning) or kept (data
  pruning); ``scores.json``: a data-pruning run's scores;
- ``channel_map.json`` (PruneFuse's selector pruned at init) and one
  ``channel_map_synced_from_round<r>.json`` per synchronisation (``channel_map_file``);
- ``checkpoint.pt``, while the run is unfinished (or kept on request): what its next
  round needs (``pf.experiments.checkpoint``);
- from ``pf sweep``: ``params.json`` (the run's parameters), ``notebook.ipynb`` (the
  executed notebook) and, for a failed run, ``error.json``.

Every file name is defined here. ``read_record`` loads records of every schema version:
schema 1 (before the record was typed) is upgraded on reading, its labels made with the
recipe its runs were written under (``SCHEMA1_RECIPE``), so that a change of today's
defaults never relabels an old run. Nothing here trains: reading a record imports
neither the trainer nor Torch-Pruning.

    record = read_record("results/demo/<run>")
    record.rounds[-1].target.test_accuracy, record.rounds[-1].label
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import pf
from pf import provenance
from pf.experiments import ACTIVE_LEARNING, DATA_PRUNING
from pf.experiments.methods import METHODS
from pf.extrapolate import EXTRAPOLATORS
from pf.storage import write_json
from pf.flops import UNIT

__all__ = ["SCHEMA_VERSION", "METRICS_FILE", "SELECTED_FILE", "SCORES_FILE", "PARAMS_FILE",
           "ERROR_FILE", "CHECKPOINT_FILE", "NOTEBOOK_FILE", "ACCURACY", "SCHEMA1_RECIPE",
           "RANDOM_LABEL", "SCORE_TITLES", "RecordError", "NetworkRecord", "SelectorRecord",
           "TargetRecord", "RoundRecord", "TIMING_FIELDS", "OVERLOADED", "UNDER_LOAD_FILE",
           "ScoresRecord", "DatasetRecord", "RunRecord", "channel_map_file", "scoring_label",
           "read_record", "CPU_FEATURES", "cpu_identity", "hardware_name", "available_cpus",
           "cpu_load", "environment"]

SCHEMA_VERSION = 2  # 2: typed record, labels stored per round; 1: before (upgraded on reading)
METRICS_FILE = "metrics.json"
SELECTED_FILE = "selected.json"
SCORES_FILE = "scores.json"
PARAMS_FILE = "params.json"
ERROR_FILE = "error.json"
CHECKPOINT_FILE = "checkpoint.pt"
NOTEBOOK_FILE = "notebook.ipynb"
# In a sweep's folder: runs known to have been timed under load, for records from before
# rounds kept their cpu_load ({"note": why, "runs": [run folders]}).
UNDER_LOAD_FILE = "under_load.json"
ACCURACY = "test split, final epoch, fraction in [0, 1]"  # what every accuracy in a record is
# The PruneFuse recipe every schema-1 run was labelled against: its departures from these
# are named in its label. Settings added later ran, before they existed, as these say.
SCHEMA1_RECIPE = {"rest": "keep", "importance": "l2", "prune_steps": 1, "fusion_variant": "map",
                  "sync_every": 0, "selector_start": "init", "fuse_into": "init"}
RANDOM_LABEL = "random"  # a data-pruning round that kept a random draw
# What figures call each of pf.scores.SCORES: kept here, as the analysis side reads records
# without loading the trainer that pf.scores imports (tests hold the two to the same names).
SCORE_TITLES = {"du": "DU", "tdds": "TDDS", "el2n": "EL2N", "forgetting": "forgetting"}


class RecordError(ValueError):
    """A run folder's metrics.json is missing, unreadable or not a run record; one line."""


def channel_map_file(origin: int | None = None) -> str:
    """The file a run saves a channel map in: ``channel_map.json`` for the selector pruned
    at init, ``channel_map_synced_from_round<r>.json`` for one pruned from round r's
    trained target (a sync, ``pf.experiments.methods``)."""
    return "channel_map.json" if origin is None else f"channel_map_synced_from_round{origin}.json"


@dataclass
class NetworkRecord:
    """A network of the run: its architecture (``<arch>@p=<ratio>`` when pruned), its
    parameter count and its forward MACs per image."""

    arch: str
    params: int
    forward_macs: int


@dataclass
class SelectorRecord:
    """The network that chose a round's next labels. ``start``: init | warm | synced |
    target (the baseline's target selects); ``origin``: "init" or "round r target" (whose
    trained weights it was pruned from); ``channel_map``: its map's file (PruneFuse)."""

    arch: str
    test_accuracy: float
    is_target: bool
    start: str | None = None
    origin: str | None = None
    channel_map: str | None = None


@dataclass
class TargetRecord:
    """The target trained at a round's budget: ``init`` scratch | fused, ``kd`` (distilled
    from the selector), its final test accuracy, the test accuracy after each epoch that
    ``curve_epochs`` lists (counted from 1) and the training loss per epoch."""

    arch: str
    init: str
    kd: bool
    test_accuracy: float
    curve: list[float]
    curve_epochs: list[int]
    train_loss: list[float]


@dataclass
class RoundRecord:
    """One round: ``labeled`` (TOTAL labeled count), ``added`` (labeled this round),
    ``label`` (the name it goes by in legends and tables), the selector (None when the
    round had none) and target, MACs and seconds per phase (``data_selection``: all that
    chose this labeled set), and ``cpu_load`` (``cpu_load()`` at its end; None in records
    from before it was kept). A data-pruning round also has ``removed_fraction`` (of the
    training set) and ``selection`` (score | moderate | ccs | random)."""

    round: int
    labeled: int
    added: int
    label: str
    selector: SelectorRecord | None
    target: TargetRecord
    macs: dict[str, int]
    seconds: dict[str, float]
    removed_fraction: float | None = None
    selection: str | None = None
    cpu_load: float | None = None


# What differs between two runs of one config on one machine: when and beside what they ran.
TIMING_FIELDS = ("seconds", "cpu_load")
# A round whose cpu_load (runnable threads per core) exceeds this was timed under load: its
# seconds say more about what ran beside it than about the method.
OVERLOADED = 1.25


@dataclass
class ScoresRecord:
    """How a data-pruning run scored the training set.

    ``score`` (du | tdds | el2n | forgetting) from a ``source`` run (full | subset) that
    ``scored`` samples of ``train_size`` in ``scoring_epochs`` (TDDS: over the span
    ``tdds_span``/``tdds_span_epochs``), extrapolated to the rest by ``extrapolation``
    (knn with ``knn_k``, ``knn_weighting`` | gnn with ``gnn_epochs``; None for a full
    run); the scoring run's test accuracy; with a ``reference`` full run (read from the
    cache when ``reference_cached``), its accuracy, MACs and seconds and the Pearson and
    Spearman correlations of the extrapolated with the full-run scores on the samples the
    subset did not see (``*_scored``: of the subset run's own scores on those it did;
    None without a reference); ``macs``/``seconds`` of the selection phases and the
    test evaluations' MACs; ``label``, how tables name the way it scored.
    """

    score: str
    source: str
    scored: int
    train_size: int
    scoring_test_accuracy: float
    macs: dict[str, int]
    seconds: dict[str, float]
    extrapolation: str | None = None
    knn_k: int | None = None
    knn_weighting: str | None = None
    gnn_epochs: int | None = None
    scoring_epochs: int | None = None
    tdds_span: str | None = None
    tdds_span_epochs: int | None = None
    reference: bool = False
    reference_cached: bool = False
    reference_test_accuracy: float | None = None
    reference_macs: int | None = None
    reference_seconds: float | None = None
    evaluation_macs: int | None = None
    pearson: float | None = None
    spearman: float | None = None
    pearson_scored: float | None = None
    spearman_scored: float | None = None
    correlations_on: str = ("unseen samples: extrapolated vs full-run scores; *_scored: the "
                            "subset run's own scores vs full-run scores on the scored samples")
    label: str = ""


@dataclass
class DatasetRecord:
    """The data a run used: the configured name, split sizes, classes and image shape."""

    name: str
    train_size: int
    test_size: int
    num_classes: int
    image_shape: list[int]


@dataclass
class RunRecord:
    """A finished run: what ``pf.experiments.run.run_experiment`` returns and writes.

    ``experiment``: active_learning | data_pruning; ``method``: the active-learning method
    (None for data pruning). ``config`` is the resolved configuration (every field of the
    experiment's config, as JSON); ``networks`` holds
    the ``target`` and the ``selector`` (a data-pruning run's scoring network);
    ``scores`` is a data-pruning run's scoring summary (None for active learning), its
    ``label`` how the run scored ("DU, kNN k=10 from 20 %").
    ``accuracy`` and ``macs_unit`` say what the numbers are. ``seconds_total`` is the
    run's wall-clock across every process that ran it; ``resumed_at_rounds`` lists how many
    rounds were done each time it continued from a checkpoint (empty: it never stopped).
    """

    config: dict
    seed: int
    experiment: str
    method: str | None
    dataset: DatasetRecord
    networks: dict[str, NetworkRecord]
    rounds: list[RoundRecord]
    environment: dict
    seconds_total: float
    channel_map_file: str | None = None
    pruned_widths: list | None = None
    scores: ScoresRecord | None = None
    selected_file: str = SELECTED_FILE
    scores_file: str | None = None
    resumed_at_rounds: list[int] = dataclasses.field(default_factory=list)
    accuracy: str = ACCURACY
    macs_unit: str = UNIT
    schema: int = SCHEMA_VERSION

    def to_json(self) -> dict:
        """The record as plain JSON types, as metrics.json holds it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, payload: dict) -> RunRecord:
        """A record from metrics.json's contents, of any schema; raises ``RecordError``."""
        try:
            if payload.get("schema") == 1:
                payload = _upgrade_schema1(payload)
            fields = {**payload}
            fields["dataset"] = DatasetRecord(**payload["dataset"])
            fields["networks"] = {role: NetworkRecord(**network)
                                  for role, network in payload["networks"].items()}
            fields["rounds"] = [_round(record) for record in payload["rounds"]]
            if payload.get("scores") is not None:
                fields["scores"] = ScoresRecord(**payload["scores"])
            return cls(**fields)
        except (KeyError, TypeError, AttributeError) as error:
            raise RecordError(f"not a run record of schema {payload.get('schema')!r} "
                              f"({error!r})") from None

    def write(self, run_dir: str | Path) -> Path:
        """Write metrics.json into ``run_dir`` atomically; call it last, once the run's
        other files are written: its presence marks a finished run."""
        return write_json(Path(run_dir) / METRICS_FILE, self.to_json())


def _round(payload: dict) -> RoundRecord:
    selector = payload["selector"]
    return RoundRecord(**{**payload, "target": TargetRecord(**payload["target"]),
                          "selector": None if selector is None else SelectorRecord(**selector)})


def scoring_label(scores: ScoresRecord) -> str:
    """How a data-pruning run scored its samples, from its record's ``scores``:
    "DU, full run", "DU, kNN k=10 from 20 %", "TDDS, GNN k=20 from 10 %"; kNN with
    exp(-distance) weights reads "kNN-exp". TDDS names its span ("TDDS (last 10
    epochs)"), so that runs scoring other epochs are never averaged together; runs from
    before the span existed scored every epoch and read plain "TDDS"."""
    name = SCORE_TITLES[scores.score]
    if scores.tdds_span:
        name = f"{name} ({scores.tdds_span} {scores.tdds_span_epochs} epochs)"
    if scores.source == "full":
        return f"{name}, full run"
    how = EXTRAPOLATORS[scores.extrapolation].title(scores.knn_weighting)
    share = 100 * scores.scored / scores.train_size
    return f"{name}, {how} k={scores.knn_k} from {share:.3g} %"


def _upgrade_schema1(payload: dict) -> dict:
    """A schema-1 metrics.json in schema 2's shape: labels made with ``SCHEMA1_RECIPE``,
    fields added since filled with what those runs did."""
    config = {**SCHEMA1_RECIPE, **payload["config"]}
    scores = payload.get("scores")  # only data-pruning runs had one (method "prune_data")
    pruning = scores is not None
    if pruning:
        scores = {**scores, "label": scoring_label(ScoresRecord(**scores))}
    method = None if pruning else METHODS[payload["method"]]
    rounds = []
    for record in payload["rounds"]:
        record, target = dict(record), record["target"]
        if pruning:
            label = scores["label"] if record["selection"] == "score" else RANDOM_LABEL
            record["removed_fraction"] = record.pop("prune_rate")
        else:  # what the target's training did decides, whatever unused flags say
            label = method.label({**config, "fusion": target["init"] == "fused",
                                  "kd": bool(target["kd"])}, SCHEMA1_RECIPE)
        # Schema 1 tested after every epoch and did not list the epochs.
        epochs = target.get("curve_epochs") or list(range(1, len(target["curve"]) + 1))
        rounds.append({**record, "label": label, "target": {**target, "curve_epochs": epochs}})
    environment_ = {"git_dirty": None, "dirty_files": [], "lock": None,
                    **payload["environment"]}
    kept = {key: value for key, value in payload.items() if key != "schema"}
    return {**kept, "config": config, "rounds": rounds, "environment": environment_,
            "scores": scores, "experiment": DATA_PRUNING if pruning else ACTIVE_LEARNING,
            "method": None if pruning else payload["method"], "schema": SCHEMA_VERSION}


def read_record(run_dir: str | Path) -> RunRecord:
    """The run record in ``run_dir``'s metrics.json (any schema); raises ``RecordError``
    naming the file when it is missing, unreadable or not a run record."""
    path = Path(run_dir) / METRICS_FILE
    try:
        payload = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise RecordError(f"{path}: not a readable metrics file ({error})") from None
    if not isinstance(payload, dict):
        raise RecordError(f"{path}: not a run record (a JSON {type(payload).__name__})")
    try:
        return RunRecord.from_json(payload)
    except RecordError as error:
        raise RecordError(f"{path}: {error}") from None


# The CPU features that decide which kernels torch runs (bf16 and AMX matmuls among them).
CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def _cpuinfo(path: Path) -> dict[str, str]:
    """The fields of the first processor in ``path`` (/proc/cpuinfo's format); empty where
    it cannot be read."""
    try:
        text = path.read_text()
    except OSError:
        return {}
    first = text.split("\n\n", 1)[0]
    return {key.strip(): value.strip() for key, _, value in
            (line.partition(":") for line in first.splitlines()) if key.strip()}


def cpu_identity(cpuinfo: str | Path = "/proc/cpuinfo") -> dict:
    """What tells CPUs apart beyond their name, which a virtual machine often shortens (a
    KVM guest reads "AMD EPYC" on a Zen 4 and a Zen 5 alike): its ``name``; ``vendor``,
    ``family``, ``model`` and ``stepping`` from ``cpuinfo`` (None where the platform has
    none); which of ``CPU_FEATURES`` it has; and ``isa``, the vector instructions torch's
    CPU kernels chose here ("AVX512", "AVX2", ...). Seconds of two runs compare only where
    these agree."""
    import torch

    fields = _cpuinfo(Path(cpuinfo))

    def number(key: str) -> int | None:
        return int(fields[key]) if fields.get(key, "").isdigit() else None

    flags = set(fields.get("flags", "").split())
    return {"name": fields.get("model name") or platform.processor() or platform.machine(),
            "vendor": fields.get("vendor_id"), "family": number("cpu family"),
            "model": number("model"), "stepping": number("stepping"),
            "features": [feature for feature in CPU_FEATURES if feature in flags],
            "isa": torch.backends.cpu.get_cpu_capability()}


def hardware_name(environment: dict) -> str:
    """A run's device as its record names it: an accelerator (a GPU) by its name, the CPU
    with its family and model where recorded ("AMD EPYC (family 26, model 2)"; records
    before ``cpu_identity`` hold the name alone)."""
    cpu = environment.get("cpu") or {}
    if environment["device"] != "cpu" or cpu.get("family") is None:  # the host CPU is not it
        return environment["device_name"]
    return f"{environment['device_name']} (family {cpu['family']}, model {cpu['model']})"


def available_cpus() -> int:
    """The cores this process may run on (a Slurm task's share), not the whole node's."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cpus or 1


def cpu_load() -> float | None:
    """The machine's 1-minute load average (runnable threads) per core this process may
    use, rounded to 0.01; None where the platform keeps none. Two one-thread runs on two
    cores read about 1.0; above ``OVERLOADED``, something beside them took their time."""
    if not hasattr(os, "getloadavg"):
        return None
    return round(os.getloadavg()[0] / available_cpus(), 2)


def environment(device) -> dict:
    """Versions, code commit and hardware (``device``: a torch.device), stored with every run.

    ``git_commit`` ends in "+dirty" when the files that compute results differ from the
    commit (``pf.provenance``), which ``git_dirty`` and ``dirty_files`` say too; ``lock``
    is the environment lock's identity and whether the installed packages match it;
    ``device_name`` is the GPU's or the CPU's name, ``cpu`` the host CPU (``cpu_identity``).
    """
    import torch
    import torchvision

    cpu = cpu_identity()
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu["name"]
    code = provenance.code_state()
    return {
        "pf": pf.__version__,
        "git_commit": code["git_commit"] + ("+dirty" if code["git_dirty"] else ""),
        "git_dirty": code["git_dirty"],
        "dirty_files": code["dirty_files"],
        "lock": provenance.lock_state(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "device": str(device),
        "device_name": hardware,
        "cpu": cpu,
        "cpu_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
