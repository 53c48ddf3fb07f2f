"""One validated configuration for every run, with named presets.

Defaults are the paper's protocol (CIFAR-10, ResNet-56, SVP's budgets and schedule);
a preset overrides some of them, and ``--set key=value`` (or a notebook's parameters
cell, or a sweep axis) overrides those. An override must match its default's type, as
in nanoGPT's configurator; anything else stops the run before any work with one line
that names the parameter and what it allows.

    config = make_config("demo", {"seed": 3, "budgets": [100, 300]})
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import yaml

from pf.data import DATASETS, CIFAR_STATS
from pf.fuse import FUSION_VARIANTS, REST_MODES
from pf.experiments.methods import FUSION_BASES, SELECTOR_STARTS, METHODS as ACTIVE_LEARNING
from pf.models import MODELS
from pf.extrapolate import WEIGHTINGS
from pf.prune import IMPORTANCES
from pf.scores import DU_WINDOW, TDDS_SPAN, TDDS_SPAN_EPOCHS, TDDS_SPANS, TDDS_WINDOW
from pf.select import METRICS
from pf.train import Schedule

__all__ = ["METHODS", "DATA_PRUNING", "SCORES", "ConfigError", "Config", "PRESETS", "make_config",
           "from_parameters", "parse_assignment", "check_budgets"]

SVP_BUDGETS = [1000, 5000, 10000, 15000, 20000, 25000]  # 1k random, then 10..50 % of 50k
SVP_SCHEDULE = [[1, 0.01], [90, 0.1], [45, 0.01], [45, 0.001]]  # 181 epochs
FIXED_DATASETS = ("digits", "synthetic", "tinyimagenet", "cifar10_jpeg", *CIFAR_STATS)
# active learning; who selects: the target, a proxy, the pruned target (pf.experiments.methods)
METHODS = tuple(ACTIVE_LEARNING)
# the other experiment: score the training set, keep the top (pf.experiments.data_pruning)
DATA_PRUNING = "prune_data"
SCORES = ("du", "tdds", "el2n", "forgetting")  # data_pruning scores, all from pf.scores
SCORE_WINDOWS = {"du": DU_WINDOW, "tdds": TDDS_WINDOW}  # epochs a windowed score needs at least
CHOICES = {
    "method": (*METHODS, DATA_PRUNING),
    "score": SCORES,
    "score_source": ("full", "subset"),
    "extrapolation": ("knn", "gnn"),
    "knn_weighting": WEIGHTINGS,
    "metric": METRICS,
    "importance": IMPORTANCES,
    "rest": REST_MODES,
    "fusion_variant": FUSION_VARIANTS,
    "selector_start": SELECTOR_STARTS,
    "fuse_into": FUSION_BASES,
    "device": ("auto", "cpu", "cuda"),
    "precision": ("auto", "fp32", "bf16"),
}


class ConfigError(ValueError):
    """A parameter is unknown, of the wrong type or out of range; the text is one line."""


@dataclass
class Config:
    """Everything that defines a run. Fields are plain JSON types (papermill-safe)."""

    # --- data -------------------------------------------------------------------------
    # digits | cifar10 | cifar100 | tinyimagenet | imagefolder:<path> | synthetic
    dataset: str = "cifar10"
    data_dir: str = ""  # dataset root and cache; "" means $PF_DATA or ~/.cache/pf/data
    # --- model ------------------------------------------------------------------------
    arch: str = "resnet56"  # target network, a name in pf.models.MODELS
    # --- method -----------------------------------------------------------------------
    # baseline (the target selects) | svp (a proxy selects) | prunefuse | prune_data
    method: str = "prunefuse"
    metric: str = "least_confidence"  # pf.select.METRICS: uncertainty, kcenters, random, norm_*
    prune_ratio: float = 0.5  # prunefuse: fraction of channels removed per layer, in [0, 1)
    importance: str = "l2"  # prunefuse: l2 (per filter) | group_l2 | random
    prune_steps: int = 1  # prunefuse: Torch-Pruning steps to reach prune_ratio (authors' code: 5)
    proxy_arch: str = "resnet20"  # svp: the selector architecture
    fusion: bool = True  # prunefuse: start the target from the fused network (else from theta)
    kd: bool = True  # prunefuse: distil the trained selector into the target
    rest: str = "keep"  # prunefuse: weights outside the selector's slots (pf.fuse.REST_MODES)
    # prunefuse: where theta_p* goes: map (the paper's text) | leading | leading_conv (the
    # authors' code; with rest=xavier its fusion exactly); pf.fuse
    fusion_variant: str = "map"
    # prunefuse: re-make the selector from the trained target every this many rounds
    # (the extended paper's T_sync; 0 = never, the 2024 method); pf.experiments.methods
    sync_every: int = 0
    # svp, prunefuse: each round's selector starts from its initial weights (init) or
    # continues from the previous round's trained selector (warm, the authors' code)
    selector_start: str = "init"
    # prunefuse: fuse into theta's initialisation (init) or, for a synced selector, into
    # the trained target it was pruned from (source)
    fuse_into: str = "init"
    # [] = lr_schedule; SVP's fast proxy: [[1,0.01],[45,0.1],[4,0.01]]
    selector_lr_schedule: list = field(default_factory=list)
    # --- data pruning (method=prune_data; Schmidt, Dhungel et al., arXiv 2506.09010) ---
    # training-dynamics score: du | tdds | el2n | forgetting; the highest are kept
    score: str = "du"
    # tdds: which end of the scoring run it scores, last | first (pf.scores.tdds_epochs;
    # last: the score-extrapolation paper's code, first: the TDDS authors')
    tdds_span: str = TDDS_SPAN
    tdds_span_epochs: int = TDDS_SPAN_EPOCHS  # tdds: epochs of that span (TDDS's trajectory_len)
    # full: a run on the whole train set scores it | subset: score a subset, extrapolate
    score_source: str = "full"
    score_subset: float = 0.2  # subset: fraction of the train set the scoring run sees, in (0, 1)
    # the scoring run's [epochs, lr] pieces; [] = lr_schedule
    score_lr_schedule: list = field(default_factory=list)
    # subset: knn (mean of the k nearest scored) | gnn (a GCN on the kNN graph)
    extrapolation: str = "knn"
    knn_k: int = 10  # neighbours: kNN's k, and the GNN graph's degree (paper: 10, 20, 50, 100)
    knn_weighting: str = "mean"  # knn: mean | exp (weights exp(-distance))
    gnn_epochs: int = 500  # gnn: full-batch Adam steps; the best validation-Pearson epoch is kept
    # fractions removed, each in [0, 1); [] = score only
    prune_rates: list = field(default_factory=lambda: [0.3, 0.5, 0.7])
    prune_baseline: bool = True  # also prune at random at every rate
    # subset: also score with a full run, report the correlations (costs a full run)
    score_reference: bool = False
    # folder where full reference runs are kept and reused;
    # "" = none (pf sweep: <sweep>/reference-cache)
    reference_cache: str = ""
    # --- labeling ---------------------------------------------------------------------
    # TOTAL labeled counts, increasing
    budgets: list = field(default_factory=lambda: list(SVP_BUDGETS))
    # --- training (SVP's protocol) ----------------------------------------------------
    # [epochs, lr] pieces
    lr_schedule: list = field(default_factory=lambda: [list(s) for s in SVP_SCHEDULE])
    batch_size: int = 128  # SGD mini-batch
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 5e-4  # L2 on every parameter
    kd_weight: float = 0.5  # distillation weight lambda (our choice: the papers give none)
    kd_temperature: float = 4.0  # distillation temperature T (our choice: the papers give none)
    # --- execution --------------------------------------------------------------------
    seed: int = 0  # seeds the initial labeled set, initialisations and shuffles
    device: str = "auto"  # auto (CUDA if present) | cpu | cuda
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    compile: bool = False  # wrap the training forward in torch.compile
    # CUDA: reproducible kernels (pf.train.set_determinism); false lets cuDNN autotune
    deterministic: bool = True
    eval_batch_size: int = 0  # test evaluation and pool scoring batch; 0 = 1024 on CUDA, 128 on CPU
    eval_every: int = 1  # test the target every this many epochs (and after the last; pf.train)

    def schedule(self) -> Schedule:
        """The target's training schedule."""
        return self._schedule(self.lr_schedule)

    def selector_schedule(self) -> Schedule:
        """The selector's schedule: ``selector_lr_schedule``, or the target's when empty."""
        return self._schedule(self.selector_lr_schedule or self.lr_schedule)

    def score_schedule(self) -> Schedule:
        """The data-pruning scoring run's schedule: ``score_lr_schedule``, or the target's
        when empty."""
        return self._schedule(self.score_lr_schedule or self.lr_schedule)

    def _schedule(self, pieces: list) -> Schedule:
        segments = tuple((int(epochs), float(lr)) for epochs, lr in pieces)
        return Schedule(segments, self.batch_size, self.momentum, self.weight_decay)

    def fit_options(self) -> dict:
        """The keyword arguments of ``pf.train.fit`` that every training of a run shares."""
        return {"kd_weight": self.kd_weight, "kd_temperature": self.kd_temperature,
                "precision": self.precision, "compile": self.compile,
                "eval_batch_size": self.eval_batch_size, "eval_every": self.eval_every}

    def to_dict(self) -> dict:
        """A JSON-ready copy of every field."""
        return dataclasses.asdict(self)


PRESETS: dict[str, dict] = {
    # pytest: a few seconds on one CPU core.
    "smoke": dict(dataset="synthetic", arch="resnet8", budgets=[64, 128],
                  lr_schedule=[[2, 0.05]], batch_size=32),
    # the whole pipeline on real handwritten digits, minutes on 2 CPU cores.
    "demo": dict(dataset="digits", arch="resnet20", proxy_arch="resnet8",
                 budgets=[100, 300, 500, 700], lr_schedule=[[1, 0.01], [19, 0.1], [10, 0.01]],
                 batch_size=64),
    # real CIFAR-10 (the JPEG copy beside the project) sized for 2 CPU cores: ResNet-20,
    # 1k random labels growing to 10 % in 3 rounds, SVP's schedule shape in 10 epochs;
    # about 13-31 min per run with one thread (README, "Real CIFAR-10 at CPU scale").
    "cpu": dict(dataset="cifar10_jpeg", arch="resnet20", proxy_arch="resnet8",
                budgets=[1000, 2000, 3500, 5000],
                lr_schedule=[[1, 0.01], [5, 0.1], [2, 0.01], [2, 0.001]], eval_every=5),
    # the paper's protocol with a third of its epochs: one GPU, well under an hour.
    "fast": dict(lr_schedule=[[1, 0.01], [30, 0.1], [15, 0.01], [15, 0.001]]),
    # the paper's protocol: CIFAR-10, ResNet-56, SVP's budgets and 181-epoch schedule.
    "paper": dict(),
}


def parse_assignment(text: str) -> tuple[str, object]:
    """Split ``key=value`` and read the value as JSON, else YAML (``1e-3``, lists, true)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set: expected key=value, got {text!r}")
    try:
        return key.strip(), json.loads(raw)
    except json.JSONDecodeError:
        pass
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return key.strip(), raw
    # A bare word that YAML reads as null or a date stays the string it was typed as.
    return key.strip(), value if isinstance(value, (bool, int, float, str, list)) else raw


def make_config(preset: str = "paper", overrides: dict | None = None) -> Config:
    """The preset's config with ``overrides`` applied, validated; raises ``ConfigError``."""
    if preset not in PRESETS:
        raise ConfigError(f"preset: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    config = Config()
    for key, value in {**PRESETS[preset], **(overrides or {})}.items():
        setattr(config, key, _coerce(key, value))
    _validate(config)
    return config


def from_parameters(namespace: dict) -> Config:
    """The Config whose fields are the same-named variables in ``namespace``.

    A notebook calls ``from_parameters(globals())`` after its ``parameters`` cell (which
    papermill may have overridden); fields the namespace lacks keep the paper's default.
    Validated exactly as ``pf run --set`` is, with the same one-line errors.
    """
    names = [f.name for f in dataclasses.fields(Config)]
    return make_config("paper", {name: namespace[name] for name in names if name in namespace})


def _coerce(key: str, value: object) -> object:
    """``value`` as the type of ``key``'s default, or a ConfigError saying what is allowed."""
    fields = {f.name: f for f in dataclasses.fields(Config)}
    if key not in fields:
        raise ConfigError(f"{key}: unknown parameter; known: {', '.join(fields)}")
    default = getattr(Config(), key)
    kind = type(default)
    if isinstance(value, tuple):
        value = list(value)
    if kind is float and type(value) is int:
        value = float(value)
    if type(value) is not kind:
        raise ConfigError(f"{key}: expected {kind.__name__} like {json.dumps(default)}, "
                          f"got {json.dumps(value, default=str)}")
    return value


def _validate(config: Config) -> None:
    name = config.dataset
    if name not in FIXED_DATASETS and not (name.startswith("imagefolder:") and len(name) > 12):
        raise ConfigError(f"dataset: unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    for key in ("arch", "proxy_arch"):
        if getattr(config, key) not in MODELS:
            raise ConfigError(f"{key}: unknown model {getattr(config, key)!r}; "
                              f"choose one of {', '.join(MODELS)}")
    if not 0 <= config.prune_ratio < 1:
        raise ConfigError(f"prune_ratio: must lie in [0, 1), got {config.prune_ratio}")
    for key, allowed in CHOICES.items():
        if getattr(config, key) not in allowed:
            raise ConfigError(f"{key}: {getattr(config, key)!r} is not one of {', '.join(allowed)}")
    check_budgets(config.budgets)
    _check_schedule("lr_schedule", config.lr_schedule, allow_empty=False)
    _check_schedule("selector_lr_schedule", config.selector_lr_schedule, allow_empty=True)
    if config.batch_size < 1:
        raise ConfigError(f"batch_size: must be a positive integer, got {config.batch_size}")
    if config.eval_batch_size < 0:
        raise ConfigError("eval_batch_size: must be 0 (auto) or positive, "
                          f"got {config.eval_batch_size}")
    for key in ("momentum", "kd_weight"):
        if not 0 <= getattr(config, key) <= 1:
            raise ConfigError(f"{key}: must lie in [0, 1], got {getattr(config, key)}")
    if config.weight_decay < 0:
        raise ConfigError(f"weight_decay: must be >= 0, got {config.weight_decay}")
    if config.kd_temperature <= 0:
        raise ConfigError(f"kd_temperature: must be > 0, got {config.kd_temperature}")
    if config.seed < 0:
        raise ConfigError(f"seed: must be >= 0, got {config.seed}")
    for key, least in (("sync_every", 0), ("prune_steps", 1), ("eval_every", 1)):
        value = getattr(config, key)
        if value < least:
            raise ConfigError(f"{key}: must be a whole number >= {least}, got {value}")
    if config.fusion_variant == "leading_conv" and config.rest == "zero":
        raise ConfigError("rest: zero with fusion_variant=leading_conv zeroes every BatchNorm "
                          "scale and the classifier (the logits are 0 for every input); "
                          "choose keep, reinit or xavier")
    problem = ACTIVE_LEARNING[config.method].problem(config) if config.method in METHODS else None
    if problem:
        raise ConfigError(problem)
    _check_schedule("score_lr_schedule", config.score_lr_schedule, allow_empty=True)
    _check_data_pruning(config)


def _check_data_pruning(config: Config) -> None:
    rates = config.prune_rates
    if not all(type(r) in (int, float) and 0 <= r < 1 for r in rates):
        raise ConfigError(f"prune_rates: expected a list of fractions in [0, 1) ([] = score "
                          f"only, no retraining), got {json.dumps(rates)}")
    if len(set(rates)) != len(rates):
        raise ConfigError(f"prune_rates: must be distinct, got {json.dumps(rates)}")
    if not 0 < config.score_subset < 1:
        raise ConfigError(f"score_subset: must lie in (0, 1), got {config.score_subset}")
    for key in ("knn_k", "gnn_epochs"):
        if getattr(config, key) < 1:
            raise ConfigError(f"{key}: must be a positive integer, got {getattr(config, key)}")
    if config.tdds_span not in TDDS_SPANS:
        raise ConfigError(f"tdds_span: {config.tdds_span!r} is not one of {', '.join(TDDS_SPANS)}")
    if config.tdds_span_epochs < SCORE_WINDOWS["tdds"]:
        raise ConfigError(f"tdds_span_epochs: must be at least {SCORE_WINDOWS['tdds']} (TDDS's "
                          f"window), got {config.tdds_span_epochs}")
    # The scoring run's length only matters when this run scores; the AL presets are short.
    tdds = config.score == "tdds"
    needed = config.tdds_span_epochs if tdds else SCORE_WINDOWS.get(config.score)
    epochs = config.score_schedule().epochs
    if config.method == DATA_PRUNING and needed and epochs < needed:
        raise ConfigError(f"score_lr_schedule: {config.score} needs a scoring run of at least "
                          f"{needed} epochs ({'tdds_span_epochs' if tdds else 'its window'}), "
                          f"got {epochs}; set score_lr_schedule")


def _check_schedule(key: str, pieces: list, allow_empty: bool) -> None:
    valid = all(isinstance(p, list) and len(p) == 2 and type(p[0]) is int and p[0] > 0
                and type(p[1]) in (int, float) and p[1] > 0 for p in pieces)
    if not valid or (not pieces and not allow_empty):
        raise ConfigError(f"{key}: expected [[epochs, lr], ...] with positive epochs "
                          f"(whole numbers) and learning rates, got {json.dumps(pieces)}")


def check_budgets(budgets: list, pool_size: int | None = None) -> None:
    """Budgets are TOTAL labeled counts: positive whole numbers, strictly increasing, and
    (once the dataset is known) at most the training-set size."""
    if not budgets or not all(type(b) is int and b > 0 for b in budgets):
        raise ConfigError(f"budgets: expected a non-empty list of positive integers, "
                          f"got {json.dumps(budgets)}")
    if any(a >= b for a, b in zip(budgets, budgets[1:])):
        raise ConfigError(f"budgets: must be strictly increasing TOTAL labeled counts, "
                          f"got {json.dumps(budgets)}")
    if pool_size is not None and budgets[-1] > pool_size:
        raise ConfigError(f"budgets: {budgets[-1]} exceeds the {pool_size} training samples")
