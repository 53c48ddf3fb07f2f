"""The active-learning methods as objects, and the per-round plan they make together.

``METHODS`` holds one object per method (``baseline``, ``svp``, ``prunefuse``; a new method
is one more entry) that answers the loop's questions: which network selects and how it
starts, how the target starts, whether it is distilled, when the selector is re-made from
the target (``sync_every``). ``plan_rounds(config)`` writes the whole run down from those
answers, one ``Round`` per budget, before anything trains; ``pf.experiments.active_learning``
executes that plan and ``pf.experiments.cost`` sums it. ``selector_start``: ``init``
retrains the selector every round from its lineage's initial weights, ``warm`` continues
from the previous round's trained selector.

Why it works this way: docs/internals.md, "pf.experiments.methods".
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import TYPE_CHECKING

from pf.select import STRATEGIES

if TYPE_CHECKING:  # pf.experiments.config reads the registry below; configs only pass through here
    from pf.experiments.config import ActiveLearningConfig

__all__ = ["BASELINE", "SVP", "PRUNEFUSE", "SELECTOR_STARTS", "FUSION_BASES", "PRUNEFUSE_RECIPE",
           "Round", "ActiveLearningMethod", "METHODS", "plan_rounds"]

BASELINE, SVP, PRUNEFUSE = "baseline", "svp", "prunefuse"  # the methods' names
SELECTOR_STARTS = ("init", "warm")  # selector_start: see the module docstring
FUSION_BASES = ("init", "source")  # fuse_into: theta's init | the network the selector came from
# The settings of PruneFuse's recipe; a run's label names those that depart from the default.
PRUNEFUSE_RECIPE = ("rest", "importance", "prune_steps", "fusion_variant", "sync_every",
                    "selector_start", "fuse_into")
RECIPE_TITLES = {"sync_every": "T_sync"}  # the extended paper's name


@dataclass(frozen=True)
class Round:
    """What one round of an active-learning run does, decided before anything runs.

    ``selector``: how this round's selector comes to be, or None when the round needs
    none: "target" (the target trained at this budget selects), "init" (its lineage's
    initial weights), "warm" (the previous round's trained selector), "synced" (pruned
    from round ``origin``'s trained target). ``origin``: the round whose trained target
    the selector's lineage was pruned from (None: theta's or the proxy's initialisation).
    ``picks``: how many samples this round labels for the next (0 in the last round);
    ``selects``: whether that pick uses the selector (not random), so that the
    selector's work counts as data selection; ``charges_target``: the round whose
    target's training is charged to data selection at this round's pick (None if none).
    """

    index: int
    labeled: int
    selector: str | None
    origin: int | None
    trains_selector: bool
    target_init: str
    kd: bool
    picks: int
    selects: bool
    charges_target: int | None

    @property
    def syncs(self) -> bool:
        """Whether this round's selector is freshly pruned from the previous target."""
        return self.selector == "synced"


class ActiveLearningMethod:
    """The answers of a method whose selector is a network of its own (SVP's proxy)."""

    name = SVP
    title = "SVP (proxy selects)"  # in figure legends
    color = "tab:orange"
    target_selects = False  # the baseline's target is its selector
    recipe = ("selector_start",)  # settings its label names when they depart from the default
    reads = ("proxy_arch", "selector_start", "selector_lr_schedule")  # the config fields it uses

    def label(self, settings: dict, defaults: dict) -> str:
        """The name a run goes by in legends and tables: "AL baseline", "SVP resnet20",
        "PruneFuse p=0.5", with the settings of ``recipe`` that differ from ``defaults``
        in brackets: "PruneFuse p=0.5 (no fusion, no KD)", "PruneFuse p=0.5 (T_sync=1)",
        "SVP resnet8 (selector_start=warm)". ``settings``: a config's fields as a dict."""
        changes = self._departures(settings) + [
            f"{RECIPE_TITLES.get(key, key)}={settings[key]}" for key in self.recipe
            if settings[key] != defaults[key]]
        return self._name(settings) + (f" ({', '.join(changes)})" if changes else "")

    def _name(self, settings: dict) -> str:
        return f"SVP {settings['proxy_arch']}"

    def _departures(self, settings: dict) -> list[str]:
        return []

    def selector_arch(self, config: ActiveLearningConfig) -> str:
        """The selector's name in records: its architecture, "@p=<ratio>" when pruned."""
        arch, ratio = self.selector_network(config)
        return arch if ratio is None else f"{arch}@p={ratio}"

    def selector_network(self, config: ActiveLearningConfig) -> tuple[str, float | None]:
        """The selector's architecture, and the ratio it is pruned at (None: unpruned)."""
        return config.proxy_arch, None

    def needs_selector(self, config: ActiveLearningConfig, last: bool) -> bool:
        """Whether a round has a selector: to pick the next labels (never with random)."""
        return STRATEGIES[config.metric].reads_network and not last

    def syncs(self, config: ActiveLearningConfig, index: int) -> bool:
        """Whether round ``index``'s selector is pruned from the previous round's target."""
        return False

    def target_init(self, config: ActiveLearningConfig) -> str:
        """How the target starts every round: "scratch" (theta's init) or "fused"."""
        return "scratch"

    def distils(self, config: ActiveLearningConfig) -> bool:
        """Whether the target is trained with distillation from the trained selector."""
        return False

    def problem(self, config: ActiveLearningConfig) -> str | None:
        """What this method cannot honour in ``config`` (one line for ``ConfigError``)."""
        if config.sync_every:
            return (f"sync_every: only prunefuse re-makes its selector from the target; "
                    f"method={self.name} needs sync_every=0")
        return None


class Baseline(ActiveLearningMethod):
    """The AL baseline: the target trained at each budget selects the next labels."""

    name = BASELINE
    title = "AL baseline (target selects)"
    color = "0.45"
    target_selects = True
    recipe = ()
    reads = ()

    def _name(self, settings: dict) -> str:
        return "AL baseline"

    def selector_network(self, config: ActiveLearningConfig) -> tuple[str, float | None]:
        """The target itself."""
        return config.arch, None

    def problem(self, config: ActiveLearningConfig) -> str | None:
        """Also a warm selector: the selector is the target, which trains from theta."""
        if config.selector_start != "init":
            return (f"selector_start: the baseline's selector is its target, which always "
                    f"trains from theta; got {config.selector_start!r}")
        return super().problem(config)


class PruneFuse(ActiveLearningMethod):
    """PruneFuse: the target pruned at init selects, then is fused into the target."""

    name = PRUNEFUSE
    title = "PruneFuse (pruned target selects)"
    color = "tab:blue"
    recipe = PRUNEFUSE_RECIPE
    reads = ("prune_ratio", "fusion", "kd", "selector_lr_schedule", "kd_weight",
             "kd_temperature", *PRUNEFUSE_RECIPE)

    def _name(self, settings: dict) -> str:
        return f"PruneFuse p={settings['prune_ratio']:g}"

    def _departures(self, settings: dict) -> list[str]:
        return [text for text, departs in (("no fusion", not settings["fusion"]),
                                           ("no KD", not settings["kd"])) if departs]

    def selector_network(self, config: ActiveLearningConfig) -> tuple[str, float | None]:
        """The target's architecture, pruned at ``prune_ratio``."""
        return config.arch, config.prune_ratio

    def needs_selector(self, config: ActiveLearningConfig, last: bool) -> bool:
        """Every round: fusion and distillation need the trained selector at every budget."""
        return True

    def syncs(self, config: ActiveLearningConfig, index: int) -> bool:
        """Every ``sync_every`` rounds from round 1 on (never with 0)."""
        return bool(config.sync_every) and index >= 1 and index % config.sync_every == 0

    def target_init(self, config: ActiveLearningConfig) -> str:
        """Fused unless ``fusion=False``."""
        return "fused" if config.fusion else "scratch"

    def distils(self, config: ActiveLearningConfig) -> bool:
        """Unless ``kd=False``."""
        return config.kd

    def problem(self, config: ActiveLearningConfig) -> str | None:
        """``fuse_into="source"`` without syncs: every selector then comes from theta's init."""
        if config.fuse_into == "source" and not config.sync_every:
            return ("fuse_into: source fuses into the trained target a synced selector was "
                    "pruned from; it needs sync_every >= 1 (without syncs it is init)")
        return None


METHODS: dict[str, ActiveLearningMethod] = {
    method.name: method for method in (Baseline(), ActiveLearningMethod(), PruneFuse())}


def plan_rounds(config: ActiveLearningConfig) -> tuple[Round, ...]:
    """The rounds of ``config``'s active-learning run, one per budget (see ``Round``).

    ``config`` is a validated config of one of ``METHODS`` (pf.experiments.config refuses the rest).
    """
    method = METHODS[config.method]
    budgets = config.budgets
    rounds, origin, charged = [], None, set()
    for index, labeled in enumerate(budgets):
        last = index == len(budgets) - 1
        picks = 0 if last else budgets[index + 1] - labeled
        selects = picks > 0 and STRATEGIES[config.metric].reads_network
        if method.syncs(config, index):
            origin, selector = index - 1, "synced"
        elif not method.needs_selector(config, last):
            selector = None
        elif method.target_selects:
            selector = "target"
        else:
            warm = config.selector_start == "warm" and index > 0
            selector = "warm" if warm else "init"
        source = index if method.target_selects else origin
        charges = source if selects and source is not None and source not in charged else None
        if charges is not None:
            charged.add(charges)
        rounds.append(Round(
            index=index, labeled=labeled, selector=selector, origin=origin,
            trains_selector=selector is not None and selector != "target",
            target_init=method.target_init(config), kd=method.distils(config),
            picks=picks, selects=selects, charges_target=charges))
    return tuple(rounds)
