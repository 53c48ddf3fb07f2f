"""Every notebook runs under papermill with small parameters; bad ones fail like the CLI; and
every notebook runs with its defaults from notebooks/, as JupyterLab runs it, leaving the
project's tracked folders as they were."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest

from conftest import PROJECT, git
from pf.experiments.config import make_config
from pf.paths import project_path
from fakes import extrapolation_tree, write_run
from pf.experiments.record import read_record

pytestmark = pytest.mark.slow  # executes notebooks through papermill

NOTEBOOKS = PROJECT / "notebooks"
PF = str(Path(sys.executable).with_name("pf"))
SMOKE_OVERRIDES = {"lr_schedule": [[1, 0.05]]}
SMOKE = {**make_config("smoke", SMOKE_OVERRIDES).to_dict(), "progress": False}


def _execute(name: str, tmp_path: Path, **parameters) -> nbformat.NotebookNode:
    output = tmp_path / f"executed-{name}"
    papermill.execute_notebook(str(NOTEBOOKS / name), str(output), parameters=parameters,
                               kernel_name="python3", cwd=str(tmp_path), progress_bar=False)
    return nbformat.read(output, as_version=4)


def _images(notebook) -> int:
    return sum("image/png" in output.get("data", {})
               for cell in notebook.cells for output in cell.get("outputs", []))


def test_notebooks_are_committed_without_outputs():
    for path in NOTEBOOKS.glob("*.ipynb"):
        notebook = nbformat.read(path, as_version=4)
        assert sum("parameters" in cell.metadata.get("tags", []) for cell in notebook.cells) == 1
        for cell in notebook.cells:
            assert not cell.get("outputs") and not cell.get("execution_count"), path.name


def test_committed_notebooks_are_what_the_git_filter_makes_of_them():
    """Else every checkout would show them modified once make setup configured the filter."""
    for path in NOTEBOOKS.glob("*.ipynb"):
        stripped = subprocess.run([sys.executable, "-m", "nbstripout", "--keep-id", "-t"],
                                  stdin=path.open(), capture_output=True, text=True, check=True)
        assert stripped.stdout == path.read_text(), path.name


def test_prunefuse_notebook_matches_pf_run(tmp_path):
    notebook = _execute("prunefuse.ipynb", tmp_path, **SMOKE, out_dir="nb")
    from_notebook = read_record(tmp_path / "nb")
    assert _images(notebook) == 1
    cli = subprocess.run([PF, "run", "--preset", "smoke", "--set", "lr_schedule=[[1,0.05]]",
                          "--out", str(tmp_path / "cli")], capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    from_cli = read_record(tmp_path / "cli")
    assert from_notebook.config == from_cli.config
    for ours, theirs in zip(from_notebook.rounds, from_cli.rounds):
        assert ours.target == theirs.target and ours.macs == theirs.macs
    selected = [json.loads((tmp_path / d / "selected.json").read_text()) for d in ("nb", "cli")]
    assert selected[0] == selected[1]


@pytest.mark.parametrize("key, value", [("arch", "resnet7"), ("budgets", [128, 64])])
def test_a_bad_parameter_fails_with_the_clis_message(tmp_path, key, value):
    with pytest.raises(papermill.PapermillExecutionError) as error:
        _execute("prunefuse.ipynb", tmp_path, **{**SMOKE, key: value}, out_dir="nb")
    cli = subprocess.run([PF, "run", "--preset", "smoke", "--set", f"{key}={json.dumps(value)}",
                          "--out", str(tmp_path / "cli")], capture_output=True, text=True)
    assert cli.returncode == 2
    assert f"pf: error: {error.value.evalue}\n" == cli.stderr
    assert error.value.ename == "ConfigError"
    assert not (tmp_path / "nb").exists() and not (tmp_path / "cli").exists()


def test_quickstart_walks_through_prune_select_fuse(tmp_path):
    notebook = _execute("quickstart.ipynb", tmp_path, initial=60, added=20, epochs=2)
    assert _images(notebook) == 3
    text = "".join(out.get("text", "") for cell in notebook.cells
                   for out in cell.get("outputs", []))
    assert "theta_p (p=0.5)" in text and "labeled now 80" in text


def test_flops_and_figures_notebooks_draw_from_protocol_and_runs(tmp_path):
    for method in ("baseline", "prunefuse"):
        write_run(tmp_path / "runs", method, method=method)
    flops = _execute("flops.ipynb", tmp_path, arch="resnet8", budgets=[64, 128, 192],
                     train_size=512, epochs=2, input_shape=[3, 16, 16], results_dir="runs",
                     out_dir="flops", dataset="synthetic")
    assert _images(flops) == 2
    assert (tmp_path / "flops" / "protocol" / "fig3_selection_flops.png").stat().st_size > 0
    assert (tmp_path / "flops" / "runs" / "fig3_selection_flops.png").stat().st_size > 0
    figures = _execute("figures.ipynb", tmp_path, results_dir="runs", out_dir="figures")
    assert (tmp_path / "figures" / "main_table.md").exists()
    assert (tmp_path / "figures" / "accuracy_vs_budget.pdf").stat().st_size > 0
    text = "".join(out.get("text", "") for cell in figures.cells for out in cell.get("outputs", []))
    assert "fig4_fused_vs_scratch not drawn" in text  # no fusion=False runs: said, not drawn
    assert _images(figures) >= 2


def test_norms_notebook_runs_norm_gs_and_compares_metrics(tmp_path):
    for metric in ("least_confidence", "norm_gs"):  # stored runs of two metrics to compare
        write_run(tmp_path / "compare", metric, method="baseline", metric=metric)
    notebook = _execute("subset_selection_norms.ipynb", tmp_path,
                        **{**SMOKE, "method": "baseline", "metric": "norm_gs"},
                        out_dir="nb", compare_dir="compare")
    record = read_record(tmp_path / "nb")
    assert record.config["metric"] == "norm_gs" and len(record.rounds) == 2
    assert _images(notebook) == 3  # the run, its first picks, the comparison
    assert (tmp_path / "nb" / "comparison" / "selection_metrics_vs_budget.png").exists()


def test_score_extrapolation_notebook_reports_correlations_and_pruned_accuracy(tmp_path):
    parameters = COMPUTE_OVERRIDES["score_extrapolation.ipynb"]
    notebook = _execute("score_extrapolation.ipynb", tmp_path, **parameters, out_dir="nb",
                        compare_dir=str(extrapolation_tree(tmp_path / "compare")))
    record = read_record(tmp_path / "nb")
    assert -1 <= record.scores.pearson <= 1
    assert [r.selection for r in record.rounds] == ["score", "random"]
    assert _images(notebook) == 3  # scores scatter, correlation and accuracy comparisons
    for name in ("score_correlation.png", "accuracy_vs_prune_rate.png"):
        assert (tmp_path / "nb" / "comparison" / name).exists()


def test_a_bad_pruning_parameter_fails_the_extrapolation_notebook_like_the_cli(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError) as error:
        _execute("score_extrapolation.ipynb", tmp_path, knn_weighting="gauss", out_dir="nb")
    assert error.value.ename == "ConfigError"
    assert error.value.evalue == "knn_weighting: 'gauss' is not one of mean, exp"
    assert not (tmp_path / "nb").exists()


def test_every_parameter_is_documented_for_papermill():
    """papermill --help-notebook (and its type inference) reads every assignment of the
    parameters cell; a line it cannot parse (an "=" inside the comment) would be missing."""
    from papermill.translators import PythonTranslator

    for path in NOTEBOOKS.glob("*.ipynb"):
        cell = next(c for c in nbformat.read(path, as_version=4).cells
                    if "parameters" in c.metadata.get("tags", []))
        assigned = [line.split("=")[0].strip() for line in cell.source.splitlines()
                    if line and not line.startswith("#")]
        documented = PythonTranslator.inspect(cell)
        assert [p.name for p in documented] == assigned, path.name
        assert all(p.help for p in documented), path.name


# ---------------------------------------------------------------------------------------
# Run from notebooks/, as JupyterLab runs them
# ---------------------------------------------------------------------------------------

# What each notebook writes with its default parameters, relative to the project root
# (runs/ is git-ignored scratch). A new notebook fails the test below until it is listed.
DEFAULT_OUTPUTS = {
    "quickstart.ipynb": [],
    "prunefuse.ipynb": ["runs/notebook/metrics.json"],
    "flops.ipynb": ["runs/flops/protocol/fig3_selection_flops.png",
                    "runs/flops/runs/demo/fig3_selection_flops.png"],
    "figures.ipynb": ["runs/figures/demo/main_table.md",
                      "runs/figures/norms/selection_metrics_vs_budget.png",
                      "runs/figures/score_extrapolation/score_correlation.png"],
    "subset_selection_norms.ipynb": ["runs/norms/metrics.json"],
    "score_extrapolation.ipynb": ["runs/score_extrapolation/metrics.json"],
}
# Notebooks whose default compute is too long for the suite (prunefuse.ipynb's demo preset
# takes minutes): smoke-sized, paths untouched.
SMOKE_PRUNING = {"experiment": "data_pruning", "removed_fractions": [0.5],
                 "score_lr_schedule": [[10, 0.05]], "score_source": "subset", "score_subset": 0.25,
                 "score_reference": True}
COMPUTE_OVERRIDES = {
    "prunefuse.ipynb": SMOKE,
    "score_extrapolation.ipynb": {**make_config("smoke", {**SMOKE_OVERRIDES, **SMOKE_PRUNING})
                                  .to_dict(), "progress": False},
}


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """What a fresh clone holds of the project, minus the package (pf is imported from
    wherever it is installed): pyproject.toml, .gitignore, notebooks/ and the committed
    results/, staged in a new git repository so that `git status` shows what runs add."""
    clone = tmp_path_factory.mktemp("clone")
    for name in ("pyproject.toml", ".gitignore"):
        shutil.copy(PROJECT / name, clone / name)
    for name in ("notebooks", "results"):
        shutil.copytree(PROJECT / name, clone / name,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    git(clone, "init", "-q")
    git(clone, "add", "-A")
    return clone


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_every_notebook_runs_from_notebooks_with_its_defaults(clone, tmp_path, name):
    """JupyterLab starts the kernel in notebooks/: default paths must still mean the
    project's results/ and runs/, and nothing may land in the tracked tree (a stray file
    there would also stamp every later run +dirty)."""
    assert name in DEFAULT_OUTPUTS, f"{name}: list what its defaults write in DEFAULT_OUTPUTS"
    before = git(clone, "status", "--porcelain", "--untracked-files=all")
    papermill.execute_notebook(str(clone / "notebooks" / name), str(tmp_path / name),
                               parameters=COMPUTE_OVERRIDES.get(name, {}), kernel_name="python3",
                               cwd=str(clone / "notebooks"), progress_bar=False)
    assert git(clone, "status", "--porcelain", "--untracked-files=all") == before
    for output in DEFAULT_OUTPUTS[name]:
        assert (clone / output).stat().st_size > 0, output


def test_relative_paths_resolve_against_the_project_from_its_notebooks_folder(tmp_path,
                                                                               monkeypatch):
    (tmp_path / "pyproject.toml").touch()
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    assert project_path("results") == tmp_path / "results"
    assert project_path("/data/runs") == Path("/data/runs")
    assert project_path("~/runs") == Path.home() / "runs"


def test_relative_paths_resolve_against_the_working_folder_elsewhere(tmp_path, monkeypatch):
    """pf sweep runs each notebook in its run folder with out_dir "."; a notebooks folder
    outside a project is just a folder."""
    (tmp_path / "pyproject.toml").touch()
    run_dir = tmp_path / "results" / "demo" / "run-0"
    lone_notebooks = tmp_path / "elsewhere" / "notebooks"
    for folder in (run_dir, lone_notebooks):
        folder.mkdir(parents=True)
        monkeypatch.chdir(folder)
        assert project_path(".") == folder
        assert project_path("runs") == folder / "runs"
