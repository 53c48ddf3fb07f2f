"""One validated configuration per experiment, with named presets.

pf runs two experiments: ``active_learning`` (a method's selector picks the labels, budget
after budget: the PruneFuse paper) and ``data_pruning`` (score the whole training set,
keep the highest-scored, retrain: the score-extrapolation paper). Each has its own
config, ``ActiveLearningConfig`` or ``DataPruningConfig``; both share ``RunConfig``'s
data, model, training and execution settings. Every field is declared once, below, with
its default (the paper's protocol: CIFAR-10, ResNet-56, SVP's budgets and schedule), a
one-line comment and what it allows (a registry's names or a range, in ``setting``);
``validate`` checks them all in one place, and each failure is one line naming the
parameter and what it allows.

A preset overrides some defaults (the keys an experiment lacks are not its concern: the
``cpu`` preset's budgets shape active learning, not data pruning), and ``--set
key=value`` (or a notebook's parameters cell, or a sweep axis) overrides those. An
override must match its default's type, as in nanoGPT's configurator.

Older names are still read (the committed sweeps use them): ``method=prune_data`` is
``experiment=data_pruning``, ``prune_rates`` is ``removed_fractions`` (fractions of the
training set removed, not to be confused with ``prune_ratio``, the channels PruneFuse
removes) and ``prune_baseline`` is ``random_baseline``.

    config = make_config("demo", {"seed": 3, "budgets": [100, 300]})
    config = make_config("demo", {"experiment": "data_pruning", "score": "el2n"})
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass

import yaml

from pf.experiments import ACTIVE_LEARNING, DATA_PRUNING, EXPERIMENTS
from pf.experiments.methods import FUSION_BASES, METHODS, PRUNEFUSE, SELECTOR_STARTS
from pf.experiments.settings import (budgets_rule, dataset_rule, fractions_rule, names_rule,
                                     refusal, schedule_rule, setting)
from pf.data import DEFAULT_SIDE
from pf.coresets import CORESETS
from pf.extrapolate import EXTRAPOLATORS, WEIGHTINGS
from pf.fuse import FUSION_VARIANTS, REST_MODES
from pf.models import MODELS
from pf.prune import IMPORTANCES
from pf.scores import SCORES, TDDS_SPAN, TDDS_SPAN_EPOCHS, TDDS_SPANS, TDDS_WINDOW
from pf.select import LEAST_CONFIDENCE, MC_PROBS, STRATEGIES
from pf.train import LR_SHAPES, Schedule

__all__ = ["ConfigError", "RunConfig", "ActiveLearningConfig", "DataPruningConfig",
           "CONFIGS", "PRESETS", "make_config", "from_parameters", "parse_assignment",
           "check_sizes", "validate"]

SVP_BUDGETS = [1000, 5000, 10000, 15000, 20000, 25000]  # 1k random, then 10..50 % of 50k
SVP_SCHEDULE = [[1, 0.01], [90, 0.1], [45, 0.01], [45, 0.001]]  # 181 epochs
# Names the committed sweeps and records still use.
LEGACY_NAMES = {"prune_rates": "removed_fractions", "prune_baseline": "random_baseline"}
LEGACY_DATA_PRUNING = "prune_data"  # method=prune_data meant experiment=data_pruning


class ConfigError(ValueError):
    """A parameter is unknown, of the wrong type or out of range; the text is one line."""


@dataclass
class RunConfig:
    """What both experiments share: data, model, training and execution. Every field is a
    plain JSON type (papermill-safe)."""

    # which experiment: active_learning (ActiveLearningConfig) | data_pruning
    experiment: str = setting(ACTIVE_LEARNING, choices=EXPERIMENTS)
    # --- data -------------------------------------------------------------------------
    # digits | cifar10 | cifar100 | cifar10_jpeg | tinyimagenet | imagefolder:<path> | synthetic
    # | imagenet | stream:<path> (the last two stream from their folders: pf.streaming)
    dataset: str = setting("cifar10", check=dataset_rule)
    # streamed datasets: side in pixels of the square crop every image becomes
    image_size: int = setting(DEFAULT_SIDE, at_least=8)
    data_dir: str = setting("")  # dataset root and cache; "" means $PF_DATA or ~/.cache/pf/data
    # --- model ------------------------------------------------------------------------
    arch: str = setting("resnet56", choices=MODELS, noun="model")  # the target network
    # dropout rate before every network's classifier (0: none, as in every committed run);
    # bald and mc_entropy need it (pf.models)
    dropout: float = setting(0.0, at_least=0, below=1)
    # --- training (SVP's protocol) ----------------------------------------------------
    lr_schedule: list = setting(SVP_SCHEDULE, check=schedule_rule(False))  # [epochs, lr] pieces
    # step: each piece holds its rate (SVP) | linear: the rate moves linearly, step by step,
    # from the previous piece's rate (0 before the first) to each piece's rate: one-cycle,
    # e.g. the converged preset's [[12, 0.1], [48, 0.001]] (pf.train.Schedule)
    lr_shape: str = setting("step", choices=LR_SHAPES)
    batch_size: int = setting(128, at_least=1)  # SGD mini-batch
    momentum: float = setting(0.9, at_least=0, at_most=1)  # SGD momentum
    weight_decay: float = setting(5e-4, at_least=0)  # L2 on every parameter
    # --- execution --------------------------------------------------------------------
    seed: int = setting(0, at_least=0)  # seeds the data draws, initialisations and shuffles
    device: str = setting("auto", choices=("auto", "cpu", "cuda"))  # auto: CUDA if present
    # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    precision: str = setting("auto", choices=("auto", "fp32", "bf16"))
    compile: bool = setting(False)  # wrap the training forward in torch.compile
    # CUDA: replay scoring, testing and (with compile) the training step from CUDA graphs:
    # the same numbers with fewer kernel launches (pf.graphs)
    cuda_graphs: bool = setting(True)
    # CUDA: reproducible kernels (pf.train.set_determinism); false lets cuDNN autotune.
    # CPU runs are deterministic either way
    deterministic: bool = setting(True)
    # test evaluation and pool scoring batch; 0 = 1024 on CUDA, 128 on CPU
    eval_batch_size: int = setting(0, at_least=0)
    # test the target every this many epochs and always after the last (the reported
    # accuracy); 1 gives Fig. 4's every-epoch curves; testing changes no training (pf.train)
    eval_every: int = setting(1, at_least=1)

    def schedule(self) -> Schedule:
        """The target's training schedule."""
        return self._schedule(self.lr_schedule)

    def _schedule(self, pieces: list) -> Schedule:
        segments = tuple((int(epochs), float(lr)) for epochs, lr in (pieces or self.lr_schedule))
        return Schedule(segments, self.batch_size, self.momentum, self.weight_decay,
                        self.lr_shape)

    def needs_reference(self) -> bool:
        """Whether the run trains a full reference run (data pruning scoring a subset
        with ``score_reference``)."""
        return False

    def fit_options(self) -> dict:
        """The keyword arguments of ``pf.train.fit`` that every training of a run shares."""
        return {"precision": self.precision, "compile": self.compile,
                "cuda_graphs": self.cuda_graphs,
                "eval_batch_size": self.eval_batch_size, "eval_every": self.eval_every}

    def predict_options(self) -> dict:
        """The keyword arguments of ``pf.train.predict`` for scoring pools and embeddings."""
        return {"batch_size": self.eval_batch_size, "precision": self.precision,
                "cuda_graphs": self.cuda_graphs}

    def to_dict(self) -> dict:
        """A JSON-ready copy of every field."""
        return dataclasses.asdict(self)

    def departures(self) -> dict:
        """The fields whose values differ from this experiment's defaults (the paper's
        protocol), as JSON types: what sets this run apart, however it was configured."""
        defaults = type(self)().to_dict()
        return {key: value for key, value in self.to_dict().items() if value != defaults[key]}

    def digest(self) -> str:
        """Eight hex digits that name this config's values (its experiment and
        ``departures``): equal for equal values, whatever preset, sweep or names produced
        them, and different when a value differs. A field added later at a default that
        keeps what runs did before leaves every digest as it was."""
        values = {"experiment": self.experiment, **self.departures()}
        text = json.dumps(values, sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(text.encode()).hexdigest()[:8]


@dataclass
class ActiveLearningConfig(RunConfig):
    """Active learning: ``method``'s selector picks the labels at every budget
    (``pf.experiments.methods``, ``pf.experiments.active_learning``)."""

    # baseline (the target selects) | svp (a proxy selects) | prunefuse (the pruned target)
    method: str = setting(PRUNEFUSE, choices=METHODS)
    # least_confidence | entropy | margin (uncertainty) | bald | mc_entropy (Monte-Carlo
    # dropout) | kcenters | badge | norm_gs | norm_top | norm_sample (Bar & Giryes) | random;
    # what each reads and computes: docs/parameters.md, "Selection metrics" (pf.select)
    metric: str = setting(LEAST_CONFIDENCE, choices=STRATEGIES)
    # bald, mc_entropy: Monte-Carlo dropout passes over the pool's penultimate features
    # (one eval-mode forward pass, then this many classifier passes per pool image), masks
    # drawn from a generator seeded per round (pf.select)
    mc_passes: int = setting(20, at_least=1)
    # score a seeded random subset of this many unlabeled images, drawn afresh each round,
    # for every metric that reads the selector (0: the whole pool; Learning Loss for AL and
    # dal-toolbox score 10,000); the plan and the record count what was scored
    pool_subset: int = setting(0, at_least=0)
    # TOTAL labeled counts, increasing
    budgets: list = setting(SVP_BUDGETS, check=budgets_rule)
    # prunefuse: fraction of channels removed per layer
    prune_ratio: float = setting(0.5, at_least=0, below=1)
    # prunefuse: channel ranking at init: l2 (per filter) | group_l2 (Torch-Pruning's
    # coupled-group L2) | random
    importance: str = setting("l2", choices=IMPORTANCES)
    # prunefuse: Torch-Pruning steps to reach prune_ratio, back to back (the authors'
    # code: 5; the same widths, other channels)
    prune_steps: int = setting(1, at_least=1)
    proxy_arch: str = setting("resnet20", choices=MODELS, noun="model")  # svp: the selector
    # prunefuse: start the target from the fused network; false: from its own
    # initialisation, on PruneFuse's selection (the Fig. 4 ablation)
    fusion: bool = setting(True)
    kd: bool = setting(True)  # prunefuse: distil the trained selector into the target
    # prunefuse: target weights outside the selector's slots: keep (theta's init) | reinit
    # (a fresh draw) | zero (they never learn: the target trains as the pruned network) |
    # xavier (reinit, then every convolution Xavier-uniform: the authors' code); pf.fuse
    rest: str = setting("keep", choices=REST_MODES)
    # prunefuse: where the trained selector goes in the target: map (each channel back
    # where pruning cut it from: the paper's text) | leading (every tensor into its leading
    # block) | leading_conv (only the main-path convolutions, leading block: the authors'
    # code; with rest=xavier its fusion exactly); pf.fuse
    fusion_variant: str = setting("map", choices=FUSION_VARIANTS)
    # prunefuse: re-make the selector from the trained target every this many rounds
    # (the extended paper's T_sync; 0 = never, the 2024 method); pf.experiments.methods
    sync_every: int = setting(0, at_least=0)
    # svp, prunefuse: each round's selector starts from its initial weights (init) or
    # continues from the previous round's trained selector with a fresh optimiser (warm,
    # the authors' code)
    selector_start: str = setting("init", choices=SELECTOR_STARTS)
    # prunefuse: fuse into theta's initialisation (init) or, for a synced selector, into
    # the trained target it was pruned from (source)
    fuse_into: str = setting("init", choices=FUSION_BASES)
    # [] = lr_schedule; SVP's fast proxy: [[1,0.01],[45,0.1],[4,0.01]]
    selector_lr_schedule: list = setting([], check=schedule_rule(True))
    kd_weight: float = setting(0.5, at_least=0, at_most=1)  # distillation weight (our choice)
    kd_temperature: float = setting(4.0, above=0)  # distillation temperature (our choice)

    def selector_schedule(self) -> Schedule:
        """The selector's schedule: ``selector_lr_schedule``, or the target's when empty."""
        return self._schedule(self.selector_lr_schedule)

    def fit_options(self) -> dict:
        """Also the distillation settings, for the trainings that distil."""
        return {**super().fit_options(), "kd_weight": self.kd_weight,
                "kd_temperature": self.kd_temperature}


@dataclass
class DataPruningConfig(RunConfig):
    """Data pruning (Schmidt, Dhungel et al., arXiv 2506.09010): score every training
    sample, remove the lowest-scored fractions and retrain (``pf.experiments.data_pruning``)."""

    experiment: str = setting(DATA_PRUNING, choices=EXPERIMENTS)  # this config's own
    # training-dynamics score: du | tdds | el2n | forgetting; the highest are kept
    score: str = setting("du", choices=SCORES)
    # tdds: which end of the scoring run it scores, last | first (pf.scores.tdds_epochs;
    # last: the score-extrapolation paper's code, first: the TDDS authors')
    tdds_span: str = setting(TDDS_SPAN, choices=TDDS_SPANS)
    # tdds: epochs of that span (TDDS's trajectory_len), at least its window
    tdds_span_epochs: int = setting(TDDS_SPAN_EPOCHS, at_least=TDDS_WINDOW)
    # full: a run on the whole train set scores it | subset: score a subset, extrapolate
    score_source: str = setting("full", choices=("full", "subset"))
    # subset: fraction of the train set the scoring run sees
    score_subset: float = setting(0.2, above=0, below=1)
    # the scoring run's [epochs, lr] pieces; [] = lr_schedule
    score_lr_schedule: list = setting([], check=schedule_rule(True))
    # subset: knn (mean of the k nearest scored) | gnn (a GCN on the kNN graph)
    extrapolation: str = setting("knn", choices=EXTRAPOLATORS)
    # neighbours: kNN's k, and the GNN graph's degree (paper: 10, 20, 50, 100)
    knn_k: int = setting(10, at_least=1)
    knn_weighting: str = setting("mean", choices=WEIGHTINGS)  # knn: mean | exp(-distance)
    # gnn: full-batch Adam steps; the best validation-Pearson epoch is kept
    gnn_epochs: int = setting(500, at_least=1)
    # fractions of the training set removed, each in [0, 1); [] = score only
    removed_fractions: list = setting([0.3, 0.5, 0.7], check=fractions_rule)
    random_baseline: bool = setting(True)  # also remove the same fractions at random
    # coreset rules that also keep each fraction's count: moderate (Xia et al. 2023, on
    # the scoring network's features) | ccs (Zheng et al. 2023, on the score); pf.coresets
    coresets: list = setting([], check=names_rule(tuple(CORESETS)))
    # ccs: fraction of hardest (highest-scored) samples dropped first (one for every rate)
    ccs_hard_cutoff: float = setting(0.1, at_least=0, below=1)
    ccs_strata: int = setting(50, at_least=1)  # ccs: equal-width score bins (CCS paper: 50)
    # subset: also score with a full run, report the correlations (costs a full run)
    score_reference: bool = setting(False)
    # folder where full reference runs are kept and reused;
    # "" = none (pf sweep: <sweep>/reference-cache)
    reference_cache: str = setting("")

    def score_schedule(self) -> Schedule:
        """The scoring run's schedule: ``score_lr_schedule``, or the target's when empty."""
        return self._schedule(self.score_lr_schedule)

    def span(self) -> dict:
        """TDDS's span as records hold it (``tdds_span``, ``tdds_span_epochs``); None for
        the other scores, which read every epoch."""
        spanned = SCORES[self.score].spanned
        return {"tdds_span": self.tdds_span if spanned else None,
                "tdds_span_epochs": self.tdds_span_epochs if spanned else None}

    def selections(self) -> tuple[str, ...]:
        """How each fraction's kept set is chosen, in the order the run retrains them:
        ``score`` (the highest-scored), then each of ``coresets``, then ``random``."""
        return ("score", *self.coresets) + (("random",) if self.random_baseline else ())

    def coresets_read_features(self) -> bool:
        """Whether a rule in ``coresets`` reads the scoring network's features."""
        return any(CORESETS[name].features for name in self.coresets)

    def needs_features(self) -> bool:
        """Whether the run embeds every training sample with the scoring network: to
        extrapolate subset scores, or for a coreset rule that reads features."""
        return self.score_source == "subset" or self.coresets_read_features()

    def needs_reference(self) -> bool:
        """Subset scoring with ``score_reference``: a full run scores everything too."""
        return self.score_source == "subset" and self.score_reference

    def subset_size(self, train_size: int) -> int:
        """How many of ``train_size`` samples a ``score_source="subset"`` run scores:
        ``score_subset`` of them, rounded half up, at least 1."""
        return min(train_size, max(1, math.floor(self.score_subset * train_size + 0.5)))


CONFIGS = {ACTIVE_LEARNING: ActiveLearningConfig, DATA_PRUNING: DataPruningConfig}
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
    # 16-20 min per run with one thread, 41-45 min tested after every epoch (docs/studies.md,
    # "Real CIFAR-10 at CPU scale").
    "cpu": dict(dataset="cifar10_jpeg", arch="resnet20", proxy_arch="resnet8",
                budgets=[1000, 2000, 3500, 5000],
                lr_schedule=[[1, 0.01], [5, 0.1], [2, 0.01], [2, 0.001]], eval_every=5),
    # real CIFAR-10 where uncertainty selection can beat random: every network trained
    # much longer (a 60-epoch one-cycle schedule; its measured distance to convergence is
    # in docs/studies.md), 1k random labels growing to 10k (20 %) in 3 rounds (docs/studies.md,
    # "Converged CIFAR-10").
    "converged": dict(dataset="cifar10_jpeg", arch="resnet20", proxy_arch="resnet8",
                      budgets=[1000, 4000, 7000, 10000], lr_schedule=[[12, 0.1], [48, 0.001]],
                      lr_shape="linear", eval_every=10),
    # the paper's protocol with a third of its epochs: one GPU, well under an hour.
    "fast": dict(lr_schedule=[[epochs if epochs == 1 else epochs // 3, lr]
                              for epochs, lr in SVP_SCHEDULE]),
    # the paper's protocol: CIFAR-10, ResNet-56, SVP's budgets and 181-epoch schedule.
    "paper": dict(),
}


def _current_names(settings: dict) -> dict:
    """``settings`` with the older names read as today's (see the module docstring)."""
    settings = {LEGACY_NAMES.get(key, key): value for key, value in settings.items()}
    if settings.get("method") == LEGACY_DATA_PRUNING:
        del settings["method"]
        settings.setdefault("experiment", DATA_PRUNING)
    return settings


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


def make_config(preset: str = "paper", overrides: dict | None = None) -> RunConfig:
    """The preset's config of the experiment ``overrides`` names (default active
    learning), with ``overrides`` applied and validated; raises ``ConfigError``."""
    if preset not in PRESETS:
        raise ConfigError(f"preset: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    overrides = _current_names(dict(overrides or {}))
    experiment = overrides.get("experiment", ACTIVE_LEARNING)
    if experiment not in CONFIGS:
        raise ConfigError(f"experiment: {experiment!r} is not one of {', '.join(EXPERIMENTS)}")
    kind = CONFIGS[experiment]
    config = kind()
    names = {f.name for f in dataclasses.fields(kind)}
    preset_values = {key: value for key, value in PRESETS[preset].items() if key in names}
    for key, value in {**preset_values, **overrides}.items():
        setattr(config, key, _coerce(kind, key, value))
    validate(config)
    return config


def from_parameters(namespace: dict, written_for: str = "paper") -> RunConfig:
    """The config whose fields are the same-named variables in ``namespace``.

    A notebook calls ``from_parameters(globals())`` after its ``parameters`` cell (which
    papermill may have overridden); ``experiment`` (default active learning) picks the
    config, and fields the namespace lacks keep the paper's default. Validated exactly as
    ``pf run --set`` is, with the same one-line errors.

    ``written_for`` is the preset whose values the parameters cell shows. A ``preset`` in
    the namespace other than it switches presets: every setting still at its
    ``written_for`` value takes ``preset``'s value, and a setting changed from it wins over
    any preset (so under ``preset="cpu"`` a value that equals ``written_for``'s cannot be
    kept; set it with ``preset`` left as is). A sweep injects resolved configs, never a
    preset: its values are taken as given.
    """
    known = {spec.name for kind in CONFIGS.values() for spec in dataclasses.fields(kind)}
    settings = _current_names({key: value for key, value in namespace.items()
                               if key in known or key in LEGACY_NAMES})
    kind = CONFIGS.get(settings.get("experiment", ACTIVE_LEARNING), ActiveLearningConfig)
    names = {f.name for f in dataclasses.fields(kind)}
    settings = {key: value for key, value in settings.items()
                if key in names or key == "experiment"}
    preset = namespace.get("preset", written_for)
    if preset != written_for:
        shown = make_config(written_for, {"experiment": kind().experiment}).to_dict()
        settings = {key: value for key, value in settings.items()
                    if key == "experiment" or _coerce(kind, key, value) != shown[key]}
    return make_config(preset, settings)


def _coerce(kind: type, key: str, value: object) -> object:
    """``value`` as the type of ``key``'s default, or a ConfigError saying what is allowed."""
    fields = {f.name: f for f in dataclasses.fields(kind)}
    if key not in fields:
        other = [name for name, config in CONFIGS.items() if config is not kind
                 and key in {f.name for f in dataclasses.fields(config)}]
        if other:
            raise ConfigError(f"{key}: a parameter of experiment={other[0]}, not "
                              f"{kind().experiment}")
        raise ConfigError(f"{key}: unknown parameter; known: {', '.join(fields)}")
    default = getattr(kind(), key)
    expected = type(default)
    if isinstance(value, tuple):
        value = list(value)
    if expected is float and type(value) is int:
        value = float(value)
    if type(value) is not expected:
        raise ConfigError(f"{key}: expected {expected.__name__} like {json.dumps(default)}, "
                          f"got {json.dumps(value, default=str)}")
    return value


def validate(config: RunConfig) -> None:
    """Check every field against what it allows, then the rules that join fields; raises
    ``ConfigError`` (one line) at the first problem. Sizes that need the dataset are
    ``check_sizes``'s."""
    for spec in dataclasses.fields(config):
        problem = refusal(spec.name, getattr(config, spec.name), spec.metadata)
        if problem:
            raise ConfigError(problem)
    problem = _joint_problem(config)
    if problem:
        raise ConfigError(problem)


def _joint_problem(config: RunConfig) -> str | None:
    """What the fields of ``config`` rule out together, or None."""
    if isinstance(config, ActiveLearningConfig):
        if config.fusion_variant == "leading_conv" and config.rest == "zero":
            return ("rest: zero with fusion_variant=leading_conv zeroes every BatchNorm scale "
                    "and the classifier (the logits are 0 for every input); choose keep, "
                    "reinit or xavier")
        picks = [b - a for a, b in zip(config.budgets, config.budgets[1:])]  # per round
        if config.pool_subset and picks and config.pool_subset < max(picks):
            return (f"pool_subset: {config.pool_subset} scored images cannot give the "
                    f"{max(picks)} labels a round adds; choose 0 (the whole pool) or "
                    f"at least {max(picks)}")
        if STRATEGIES[config.metric].inputs == MC_PROBS and config.dropout == 0:
            return (f"metric: {config.metric} samples Monte-Carlo dropout before the "
                    f"classifier and needs dropout > 0, e.g. --set dropout=0.3")
        return METHODS[config.method].problem(config)
    spanned = SCORES[config.score].spanned
    needed = config.tdds_span_epochs if spanned else SCORES[config.score].window
    epochs = config.score_schedule().epochs
    if needed and epochs < needed:
        return (f"score_lr_schedule: {config.score} needs a scoring run of at least {needed} "
                f"epochs ({'tdds_span_epochs' if spanned else 'its window'}), got {epochs}; "
                f"set score_lr_schedule")
    return None


def check_sizes(config: RunConfig, train_size: int) -> None:
    """Refuse, with a one-line ``ConfigError``, what the training set's size rules out:
    budgets beyond it (active learning); a scored subset that leaves fewer than two
    samples unseen, or that its extrapolator rules out (``pf.extrapolate.EXTRAPOLATORS``:
    fewer than ``knn_k`` for kNN, fewer than ``GNN_MIN_SCORED`` or ``knn_k`` >= N for the
    GNN) (data pruning). ``pf run`` checks before any work,
    once the dataset is loaded; ``pf sweep --dry-run`` with the known sizes."""
    if isinstance(config, ActiveLearningConfig):
        if config.budgets[-1] > train_size:
            raise ConfigError(f"budgets: {config.budgets[-1]} exceeds the {train_size} "
                              f"training samples")
        return
    if config.score_source != "subset":
        return
    scored = config.subset_size(train_size)
    if train_size - scored < 2:
        raise ConfigError(f"score_subset: {config.score_subset} of {train_size} samples leaves "
                          f"fewer than 2 to extrapolate to")
    problem = EXTRAPOLATORS[config.extrapolation].problem(scored, train_size, config.knn_k)
    if problem:
        raise ConfigError(f"{problem} (score_subset={config.score_subset} of {train_size})")
