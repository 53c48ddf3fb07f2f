"""Figures and the main table from a synthetic results tree: what is drawn, what is not
(and says why), and the table's cells. No training; a few seconds on CPU."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from matplotlib.text import Text

import pf.analysis.budget_figures as budget_figures
import pf.analysis.prunefuse_figures as prunefuse_figures
from conftest import text_sizes
from fakes import fake_record, write_run
from pf.analysis.budget_figures import main_table
from pf.analysis.figures import make_figures
from pf.analysis.notebook_figures import plot_run
from pf.analysis.plotting import (FONT_SIZE, LEGEND_ROWS, TITLE_SIZE, footer, panel_grid,
                                  theme)
from pf.analysis.prunefuse_figures import (fig3_selection_flops, fig4_fused_vs_scratch,
                                           fig5_prunefuse_vs_svp, tsync_accuracy_and_cost)
from pf.analysis.results import collect, mean_std

FIGURES = ("accuracy_vs_budget", "fig3_selection_flops", "fig4_fused_vs_scratch",
           "fig5_prunefuse_vs_svp", "tsync_accuracy_and_cost", "paired_differences",
           "win_tie_loss")
TABLES = ("main_table", "paired_table", "claims")
COMPANION = ("selection_metrics_vs_budget", "score_correlation", "score_correlation_table",
             "accuracy_vs_prune_rate", "pruning_table")  # tests/analysis/test_companion_figures.py
BASELINE_FINAL = (0.90, 0.91, 0.93)  # the baseline's accuracy at 50 %, seeds 0..2


def _paper_tree(root: Path, with_scratch: bool = True, dataset: str = "cifar10",
                sweep: str | None = None) -> Path:
    """Baseline and SVP over three seeds; PruneFuse at p = 0.5, 0.6, 0.7, fused and not,
    and at p = 0.5, 0.6 with T_sync = 1;
    in the folder ``sweep/dataset`` (default: ``dataset``, the sweep then being the dataset)."""
    folder = f"{sweep}/{dataset}" if sweep else dataset
    for seed, final in enumerate(BASELINE_FINAL):
        write_run(root, f"{folder}/baseline_s{seed}", method="baseline", seed=seed,
                  dataset=dataset, accuracies=(0.78, 0.86, final))
        write_run(root, f"{folder}/svp_s{seed}", method="svp", seed=seed, dataset=dataset,
                  accuracies=(0.77, 0.85, final - 0.01))
        for ratio in (0.5, 0.6, 0.7):
            write_run(root, f"{folder}/pf{ratio}_s{seed}", prune_ratio=ratio, seed=seed,
                      dataset=dataset, accuracies=(0.80, 0.88, final + 0.01))
            if ratio != 0.7:  # T_sync = 1 selects the last labels with a pruned trained target
                write_run(root, f"{folder}/pf{ratio}_sync1_s{seed}", prune_ratio=ratio, seed=seed,
                          dataset=dataset, sync_every=1, accuracies=(0.80, 0.89, final + 0.02))
            if with_scratch and ratio != 0.7:
                write_run(root, f"{folder}/pf{ratio}_scratch_s{seed}", prune_ratio=ratio,
                          seed=seed, fusion=False, dataset=dataset,
                          accuracies=(0.79, 0.87, final))
    return root


def _written(out: Path) -> set[str]:
    return {p.name for p in out.iterdir()} if out.exists() else set()


def test_every_figure_is_written_as_png_and_pdf(tmp_path):
    out = tmp_path / "figures"
    made = make_figures(_paper_tree(tmp_path / "results"), out)
    assert set(made) == {*FIGURES, *TABLES, *COMPANION}
    assert all(isinstance(made[name], str) for name in COMPANION)  # no such runs here
    for name in FIGURES:
        assert [p.name for p in made[name]] == [f"{name}.png", f"{name}.pdf"], made[name]
        assert all(p.stat().st_size > 1000 for p in made[name])
    for name in TABLES:
        assert [p.name for p in made[name]] == [f"{name}.csv", f"{name}.md"]
    assert _written(out) == {p.name for name in (*FIGURES, *TABLES) for p in made[name]}


def test_an_empty_results_folder_draws_nothing_and_says_so(tmp_path):
    out = tmp_path / "figures"
    made = make_figures(tmp_path, out)
    assert all(isinstance(reason, str) and "no runs" in reason for reason in made.values())
    assert _written(out) == set()


def test_a_missing_comparison_gives_its_reason_and_no_file(tmp_path):
    out = tmp_path / "figures"
    made = make_figures(_paper_tree(tmp_path / "results", with_scratch=False), out)
    reason = made["fig4_fused_vs_scratch"]
    assert isinstance(reason, str) and "fusion=False" in reason and "\n" not in reason
    assert not any(name.startswith("fig4") for name in _written(out))
    assert all(isinstance(made[name], list) for name in FIGURES if name != "fig4_fused_vs_scratch")


def test_figures_without_their_methods_are_skipped(tmp_path):
    results, out = tmp_path / "results", tmp_path / "figures"
    write_run(results, "pf_s0", prune_ratio=0.7)
    made = make_figures(results, out)
    assert isinstance(made["accuracy_vs_budget"], list)
    for name in ("fig3_selection_flops", "fig4_fused_vs_scratch", "fig5_prunefuse_vs_svp"):
        assert isinstance(made[name], str), name
    assert "baseline" in made["fig3_selection_flops"] and "SVP" in made["fig5_prunefuse_vs_svp"]
    assert _written(out) == {"accuracy_vs_budget.png", "accuracy_vs_budget.pdf",
                             "main_table.csv", "main_table.md"}


def test_random_selection_costs_nothing_so_fig3_is_not_drawn(tmp_path):
    results = tmp_path / "results"
    for method in ("baseline", "prunefuse"):
        write_run(results, method, method=method, metric="random")
    table = collect(results)
    table["data_selection_macs"] = 0  # what a random pick spends choosing the labeled set
    assert isinstance(fig3_selection_flops(table, tmp_path / "figures"), str)
    assert _written(tmp_path / "figures") == set()


def test_fig4_at_a_budget_the_runs_lack_says_so(tmp_path):
    table = collect(_paper_tree(tmp_path / "results"))
    reason = fig4_fused_vs_scratch(table, tmp_path / "figures", budget=12345)
    assert isinstance(reason, str) and "12345" in reason
    drawn = fig4_fused_vs_scratch(table, tmp_path / "figures", budget=15000)
    assert [p.name for p in drawn] == ["fig4_fused_vs_scratch.png", "fig4_fused_vs_scratch.pdf"]


def test_several_datasets_give_one_figure_each(tmp_path):
    results, out = tmp_path / "results", tmp_path / "figures"
    _paper_tree(results, dataset="cifar10", sweep="both")
    _paper_tree(results, dataset="cifar100", with_scratch=False, sweep="both")
    made = make_figures(results, out)
    assert [p.name for p in made["accuracy_vs_budget"]] == [
        "accuracy_vs_budget_cifar10.png", "accuracy_vs_budget_cifar10.pdf",
        "accuracy_vs_budget_cifar100.png", "accuracy_vs_budget_cifar100.pdf"]
    assert [p.name for p in made["fig4_fused_vs_scratch"]] == [
        "fig4_fused_vs_scratch_cifar10.png", "fig4_fused_vs_scratch_cifar10.pdf"]


def test_sweeps_are_drawn_apart_never_averaged_together(tmp_path):
    results, out = tmp_path / "results", tmp_path / "figures"
    for sweep, final in (("early", 0.90), ("late", 0.70)):  # same method and budgets
        for seed in (0, 1):
            write_run(results, f"{sweep}/baseline_s{seed}", method="baseline", seed=seed,
                      accuracies=(0.6, 0.65, final))
    made = make_figures(results, out)
    assert [p.name for p in made["early/accuracy_vs_budget"]] == ["accuracy_vs_budget.png",
                                                                 "accuracy_vs_budget.pdf"]
    assert made["late/main_table"][0] == out / "late" / "main_table.csv"
    assert "90.00 ± 0.00 (n=2)" in (out / "early" / "main_table.md").read_text()
    assert "70.00 ± 0.00 (n=2)" in (out / "late" / "main_table.md").read_text()
    assert "main_table" not in made and not (out / "main_table.md").exists()


def test_only_the_named_figures_are_made_each_sweep_apart(tmp_path):
    """flops.ipynb draws Fig. 3 of every sweep under results/, each from its own runs."""
    results, out = tmp_path / "results", tmp_path / "figures"
    for sweep in ("early", "late"):
        _paper_tree(results, sweep=sweep)
    made = make_figures(results, out, only="fig3_selection_flops")
    assert set(made) == {"early/fig3_selection_flops", "late/fig3_selection_flops"}
    assert {p.name for p in out.rglob("*")} == {"early", "late", "fig3_selection_flops.png",
                                                 "fig3_selection_flops.pdf"}
    with pytest.raises(ValueError, match="^only: unknown figure 'fig9'; known: accuracy_vs"):
        make_figures(results, out, only=["main_table", "fig9"])


def test_main_table_cells_are_mean_std_over_seeds(tmp_path):
    csv, markdown = main_table(collect(_paper_tree(tmp_path / "results")), tmp_path / "figures")
    table = pd.read_csv(csv, index_col=["dataset", "arch", "metric", "method"], dtype=str)
    assert list(table.columns) == ["5000 (10.0 %)", "15000 (30.0 %)", "25000 (50.0 %)",
                                   "area (mean over budgets)"]
    assert table.index.get_level_values("method").tolist() == [
        "AL baseline", "PruneFuse p=0.5", "PruneFuse p=0.5 (T_sync=1)",
        "PruneFuse p=0.5 (no fusion)", "PruneFuse p=0.6", "PruneFuse p=0.6 (T_sync=1)",
        "PruneFuse p=0.6 (no fusion)", "PruneFuse p=0.7", "SVP resnet20"]
    row = ("cifar10", "resnet56", "least_confidence")
    assert table.loc[(*row, "AL baseline"), "25000 (50.0 %)"] == "91.33 ± 1.53 (n=3)"
    assert table.loc[(*row, "AL baseline"), "5000 (10.0 %)"] == "78.00 ± 0.00 (n=3)"
    # budgets 10, 30, 50 %: trapezoids (78 + 86) / 2 and (86 + final) / 2 over equal widths
    areas = [(78 + 86) / 4 + (86 + 100 * final) / 4 for final in BASELINE_FINAL]
    assert table.loc[(*row, "AL baseline"), "area (mean over budgets)"] == mean_std(
        np.mean(areas) / 100, np.std(areas, ddof=1) / 100, 3)
    assert table.loc[(*row, "PruneFuse p=0.7"), "25000 (50.0 %)"] == mean_std(
        sum(BASELINE_FINAL) / 3 + 0.01, pd.Series(BASELINE_FINAL).std(), 3)
    text = markdown.read_text()
    assert "| cifar10 | resnet56 | least_confidence | AL baseline | 78.00" in text
    assert "mean ± std over seeds" in text


def test_fig5_leaves_out_ablations_of_the_target_training(tmp_path):
    results = tmp_path / "results"
    write_run(results, "svp", method="svp")
    write_run(results, "pf_no_kd", kd=False)
    assert isinstance(fig5_prunefuse_vs_svp(collect(results), tmp_path / "figures"), str)
    write_run(results, "pf", kd=True)
    drawn = fig5_prunefuse_vs_svp(collect(results), tmp_path / "figures")
    assert [p.name for p in drawn] == ["fig5_prunefuse_vs_svp.png", "fig5_prunefuse_vs_svp.pdf"]


def test_plot_run_draws_one_run_for_the_notebook(tmp_path):
    import matplotlib.pyplot as plt

    fig = plot_run(fake_record(method="baseline"))
    try:
        assert len(fig.axes) == 3 and all(ax.has_data() for ax in fig.axes)
    finally:
        plt.close(fig)


def test_a_figure_the_results_no_longer_support_is_removed(tmp_path):
    results, out = tmp_path / "results", tmp_path / "figures"
    _paper_tree(results)
    assert isinstance(fig4_fused_vs_scratch(collect(results), out), list)
    for scratch in results.glob("cifar10/*scratch*"):
        (scratch / "metrics.json").unlink()
    (out / "notes.png").write_bytes(b"mine")
    assert isinstance(fig4_fused_vs_scratch(collect(results), out), str)
    assert not any(name.startswith("fig4") for name in _written(out))
    assert "notes.png" in _written(out)


def test_tsync_figure_plots_accuracy_and_selection_cost_against_t_sync(tmp_path):
    results = tmp_path / "results"
    write_run(results, "svp", method="svp")
    for seed in (0, 1):
        write_run(results, f"pf_sync1_s{seed}", sync_every=1, seed=seed,
                  accuracies=(0.8, 0.9, 0.94 + seed / 100))
    table = collect(results)
    # One T_sync only: nothing to compare; Fig. 5 leaves synced selectors out.
    assert "sync_every" in tsync_accuracy_and_cost(table, tmp_path / "figures")
    assert isinstance(fig5_prunefuse_vs_svp(table, tmp_path / "figures"), str)
    write_run(results, "pf_s0", accuracies=(0.8, 0.9, 0.93))
    table = collect(results)
    figure = prunefuse_figures._sync_accuracy_and_cost(table)
    accuracy, macs, seconds = figure.axes
    t_sync, percent = accuracy.lines[0].get_data()
    assert list(t_sync) == [0, 1] and list(percent) == pytest.approx([93.0, 94.5])
    last = table[table.labeled == table.labeled.max()].set_index("run_dir")
    assert list(macs.lines[0].get_data()[1]) == [
        last.data_selection_macs["pf_s0"],
        last.data_selection_macs[["pf_sync1_s0", "pf_sync1_s1"]].mean()]
    assert macs.get_yscale() == seconds.get_yscale() == "log"
    assert isinstance(fig5_prunefuse_vs_svp(table, tmp_path / "figures"), list)


def test_tsync_figure_rings_the_seconds_of_runs_timed_under_load_and_says_so(tmp_path):
    results = tmp_path / "results"
    write_run(results, "baseline", method="baseline")
    write_run(results, "pf_s0", accuracies=(0.8, 0.9, 0.93))
    for seed in (0, 1):
        write_run(results, f"pf_sync1_s{seed}", sync_every=1, seed=seed)
    table = collect(results)
    caption = " ".join(prunefuse_figures._sync_accuracy_and_cost(table).texts[-1]
                       .get_text().split())
    assert "under load" not in caption
    # One seed of T_sync = 1 under load marks its mean; the AL baseline's line is named.
    table.loc[table.run_dir.isin(["pf_sync1_s1", "baseline"]), "under_load"] = True
    figure = prunefuse_figures._sync_accuracy_and_cost(table)
    accuracy, macs, seconds = figure.axes
    assert not accuracy.collections and not macs.collections
    [rings] = seconds.collections
    last = table[(table.labeled == table.labeled.max()) & (table.sync_every == 1)
                 & (table.method == "prunefuse")]
    assert rings.get_offsets().tolist() == [[1, last.data_selection_seconds.mean()]]
    caption = " ".join(figure.texts[-1].get_text().split())
    assert "Ringed: seconds timed under load" in caption
    assert "The AL baseline's seconds (dotted) were timed under load." in caption


def test_one_legend_for_all_panels_goes_below_them_or_beside_a_single_one():
    """A label drawn in several panels is one entry; the legend covers no panel: below the
    panels when short, beside a single panel, which keeps its size, when longer."""
    runs = pd.DataFrame({"dataset": ["cifar10"], "arch": ["resnet56"]})
    for panels, lines in ((1, LEGEND_ROWS), (1, LEGEND_ROWS + 1), (3, LEGEND_ROWS + 1)):
        with theme():
            fig, axes = panel_grid(panels)
            width = fig.get_figwidth()
            for ax in axes:
                for index in range(lines):
                    ax.plot([0, 1], [index, index],
                            label=f"PruneFuse p=0.5 (a departure named {index})")
                ax.legend()
            footer(fig, runs, [2])
        assert [ax.get_legend() for ax in axes] == [None] * panels
        [key] = fig.legends
        assert len(key.get_texts()) == lines
        renderer = fig.canvas.get_renderer()
        box = key.get_window_extent(renderer)
        drawn = [ax.get_tightbbox(renderer) for ax in axes]  # with ticks, labels and title
        beside = box.x0 > max(panel.x1 for panel in drawn)
        below = box.y1 < min(panel.y0 for panel in drawn)
        assert beside == (panels == 1 and lines > LEGEND_ROWS) != below
        assert (fig.get_figwidth() > width) == beside
        assert not any(box.overlaps(panel) for panel in drawn)


def test_every_text_of_every_figure_has_one_of_two_sizes(tmp_path):
    table = collect(_paper_tree(tmp_path / "results"))
    drawings = (budget_figures._accuracy_vs_budget, prunefuse_figures._selection_flops,
                lambda runs: prunefuse_figures._fused_vs_scratch(runs, None),
                prunefuse_figures._prunefuse_vs_svp, prunefuse_figures._sync_accuracy_and_cost)
    for draw in drawings:
        with theme():
            figure = draw(table)
        assert text_sizes(figure) == ({TITLE_SIZE}, {FONT_SIZE})


def test_fig5_spans_a_few_test_images_and_says_what_one_is_worth(tmp_path):
    """Two selectors one test image apart (of 360) must not read as a ranking."""
    results = tmp_path / "results"
    write_run(results, "svp", method="svp", accuracies=(0.8, 0.85, 0.9))
    write_run(results, "pf", accuracies=(0.8, 0.85, 0.9 + 1 / 360))
    table = collect(results)
    assert set(table.test_size) == {10000}  # the fakes' test set
    [ax] = prunefuse_figures._prunefuse_vs_svp(table.drop(columns="test_size")).axes
    low, high = ax.get_ylim()
    assert high - low == pytest.approx(prunefuse_figures.MIN_SPAN)  # test-set size unknown
    table["test_size"] = 360
    figure = prunefuse_figures._prunefuse_vs_svp(table)
    [ax] = figure.axes
    low, high = ax.get_ylim()
    assert high - low == pytest.approx(prunefuse_figures.MIN_SPAN_IMAGES * 100 / 360)
    assert low < 90 < 90 + 100 / 360 < high
    ticks = ax.yaxis.get_minor_locator().tick_values(low, high)  # one test image apart
    assert list(np.diff(ticks)) == pytest.approx([100 / 360] * (len(ticks) - 1))
    caption = " ".join(figure.texts[-1].get_text().split())
    assert "One test image = 0.28 pp (360 test images)" in caption
    assert f"at least {prunefuse_figures.MIN_SPAN_IMAGES} images" in caption


def test_fig5_labels_close_points_away_from_each_other():
    stats = pd.DataFrame({"label": ["PruneFuse p=0.6", "PruneFuse p=0.5", "SVP resnet8",
                                    "AL baseline"],
                          "selector_params": [41000, 69000, 78000, 270000],
                          "mean": [0.470, 0.449, 0.428, 0.403]})
    sides = {label: above for label, *_, above in prunefuse_figures._label_sides(stats)}
    # p=0.5 and the proxy, the closest pair: the higher labels above, the lower below; then
    # p=0.6, close to p=0.5, opposite it; the baseline, far from all, above.
    assert sides == {"PruneFuse p=0.6": False, "PruneFuse p=0.5": True, "SVP resnet8": False,
                     "AL baseline": True}


def test_runs_are_shown_under_their_configured_dataset_with_its_title(tmp_path):
    record = fake_record(dataset="cifar10_jpeg")
    record.dataset.name = "imagefolder:/somewhere/cifar10-jpeg.tar.gz"  # as older runs held it
    record.write(tmp_path / "results" / "run")
    table = collect(tmp_path / "results")
    assert set(table.dataset) == {"cifar10_jpeg"}
    caption = budget_figures._accuracy_vs_budget(table).texts[-1].get_text()
    assert "CIFAR-10 (JPEG q75)" in caption and "imagefolder" not in caption


def test_random_selection_is_drawn_as_the_floor_in_each_panel_of_its_target(tmp_path):
    results = tmp_path / "results"
    write_run(results, "random", method="baseline", metric="random", accuracies=(0.7, 0.8, 0.9))
    alone = budget_figures._accuracy_vs_budget(collect(results))
    [panel] = alone.axes  # a target with nothing but random selection keeps its panel
    assert panel.get_title().endswith("random")
    for metric in ("least_confidence", "kcenters"):
        write_run(results, metric, method="baseline", metric=metric)
        write_run(results, f"pf_{metric}", metric=metric)
    figure = budget_figures._accuracy_vs_budget(collect(results))
    assert sorted(ax.get_title() for ax in figure.axes) == ["resnet56 · k-centers",
                                                           "resnet56 · least confidence"]
    for ax in figure.axes:
        labels = ax.get_legend_handles_labels()[1]
        assert labels.count("AL baseline · random") == 1 and len(labels) == 3, labels
    assert "random selection, the floor" in " ".join(figure.texts[-1].get_text().split())


def test_fig3_shows_selection_macs_beside_selection_seconds_per_ratio(tmp_path):
    table = collect(_paper_tree(tmp_path / "results"))
    # PruneFuse's bars lower than the baseline's beside them, as measured seconds are
    table.loc[table.method == "prunefuse", "data_selection_seconds"] *= 0.6
    figure = prunefuse_figures._selection_flops(table)
    ratios = 3  # p = 0.5, 0.6, 0.7: a row each
    assert len(figure.axes) == 2 * ratios
    macs, seconds = figure.axes[0::2], figure.axes[1::2]
    assert all("MACs" in ax.get_ylabel() for ax in macs)
    assert all("wall-clock (s)" in ax.get_ylabel() for ax in seconds)
    baseline, pruned = seconds[0].containers  # the bars, a container per method
    shown = [bar.get_height() for bar in pruned]
    pruned = table[(table.method == "prunefuse") & (table.prune_ratio == 0.5)
                   & (table.sync_every == 0) & (table["round"] > 0)]
    last_seconds = pruned.groupby("labeled").data_selection_seconds.mean().iloc[-1]
    assert shown[-1] == pytest.approx(last_seconds)
    assert [text.get_text() for text in seconds[0].texts][-1] == (
        f"{last_seconds / baseline[-1].get_height():.2f}×")
    assert "Wall-clock on Test CPU" in figure.texts[-1].get_text()
    assert "Hatched" not in figure.texts[-1].get_text()
    renderer = figure.canvas.get_renderer()
    [key] = figure.legends  # one legend, the same two colours in every panel, covering no bar
    box = key.get_window_extent(renderer)
    assert [text.get_text() for text in key.get_texts()] == [
        "AL baseline (target selects)", "PruneFuse (pruned target selects)"]
    assert not any(box.overlaps(bar.get_window_extent(renderer)) for ax in figure.axes
                   for bars in ax.containers for bar in bars)
    assert [ax.get_legend() for ax in figure.axes] == [None] * (2 * ratios)
    for ax in figure.axes:  # each ratio clear of every bar and error bar, inside its panel
        marks = [bar.get_window_extent(renderer) for bars in ax.containers for bar in bars]
        marks += [line.get_window_extent(renderer) for line in ax.lines]
        for text in ax.texts:
            box = text.get_window_extent(renderer)
            assert not any(box.overlaps(mark) for mark in marks), text.get_text()
            assert ax.get_window_extent(renderer).contains(box.x1, box.y1)


def test_departures_from_the_recipe_get_a_panel_per_ratio_and_a_look_of_their_own(tmp_path):
    results = tmp_path / "results"
    write_run(results, "baseline", method="baseline")
    write_run(results, "random", method="baseline", metric="random")
    for ratio in (0.5, 0.7):
        write_run(results, f"pf{ratio}", prune_ratio=ratio)
        write_run(results, f"pf{ratio}_sync", prune_ratio=ratio, sync_every=1)
    write_run(results, "pf0.5_nofusion", prune_ratio=0.5, fusion=False)
    figure = budget_figures._accuracy_vs_budget(collect(results))
    assert [ax.get_title().replace("\n", " · ") for ax in figure.axes] == [  # wrapped at " · "
        "resnet56 · least confidence", "resnet56 · least confidence · p=0.5 variants",
        "resnet56 · least confidence · p=0.7 variants"]
    looks = {}
    for ax in figure.axes:
        handles, labels = ax.get_legend_handles_labels()
        panel = {label: (to_hex(h.get_color()), tuple(h._unscaled_dash_pattern[1] or ()),
                         h.get_marker())
                 for h, label in zip(handles, labels)}
        assert len(set(panel.values())) == len(panel), panel  # no two lines look alike
        looks.update(panel)
    main = figure.axes[0].get_legend_handles_labels()[1]
    assert not any("(" in label for label in main) and "AL baseline · random" in main
    assert looks["PruneFuse p=0.5 (T_sync=1)"] == looks["PruneFuse p=0.7 (T_sync=1)"]
    recipe_colors = {looks[f"PruneFuse p={ratio}"][0] for ratio in (0.5, 0.7)}
    departures = [look for label, look in looks.items() if "(" in label]
    floor = looks["AL baseline · random"][1]
    assert all(color not in recipe_colors and dashes != floor for color, dashes, _ in departures)


def test_fig5_labels_cover_no_point_error_bar_or_other_label_and_stay_in_their_panel(tmp_path):
    results = tmp_path / "results"
    for seed, spread in enumerate((-0.001, 0.001)):  # two seeds: error bars to keep clear of
        write_run(results, f"baseline{seed}", method="baseline", seed=seed,
                  accuracies=(0.78, 0.86, 0.904 + spread))
        write_run(results, f"svp{seed}", method="svp", seed=seed,
                  accuracies=(0.77, 0.85, 0.905 + spread))
        for ratio, final in ((0.3, 0.906), (0.4, 0.907), (0.5, 0.905), (0.7, 0.903)):
            write_run(results, f"pf{ratio}_{seed}", prune_ratio=ratio, seed=seed,
                      accuracies=(0.8, 0.88, final + spread))
    figure = prunefuse_figures._prunefuse_vs_svp(collect(results))
    renderer = figure.canvas.get_renderer()
    [ax] = figure.axes
    for text in ax.texts:
        text.update_positions(renderer)
    labels = [Text.get_window_extent(text, renderer) for text in ax.texts]  # not the leaders
    assert len(labels) == 6
    assert not any(a.overlaps(b) for i, a in enumerate(labels) for b in labels[i + 1:])
    panel = ax.get_window_extent(renderer)
    for box in labels:
        assert panel.contains(box.x0, box.y0) and panel.contains(box.x1, box.y1)
    for points, _, bars in (container.lines for container in ax.containers):
        for x, y in ax.transData.transform(points.get_xydata()):
            assert not any(box.contains(x, y) for box in labels)
        for segment in (segment for bar in bars for segment in bar.get_segments()):
            (x, low), (_, high) = ax.transData.transform(segment)
            assert not any(box.x0 <= x <= box.x1 and box.y0 < high and low < box.y1
                           for box in labels)


def test_fig3_hatches_the_seconds_of_runs_timed_under_load_and_says_so(tmp_path):
    table = collect(_paper_tree(tmp_path / "results"))
    table["under_load"] = (table.method == "prunefuse") & (table.prune_ratio == 0.5)
    figure = prunefuse_figures._selection_flops(table)
    macs, seconds = figure.axes[0], figure.axes[1]  # p = 0.5
    baseline, pruned = seconds.containers
    assert all(bar.get_hatch() for bar in pruned) and not any(bar.get_hatch() for bar in baseline)
    assert not any(bar.get_hatch() for bars in macs.containers for bar in bars)
    assert not any(bar.get_hatch() for ax in figure.axes[2:] for bars in ax.containers
                   for bar in bars)  # p = 0.6 and 0.7: timed without load
    assert "Hatched: seconds timed under load" in " ".join(figure.texts[-1].get_text().split())
