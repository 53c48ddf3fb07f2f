"""The committed results: every run is recognised as done by the sweep that made it, and no
record names a path of the machine that made it."""

import json
import re

import pytest

from conftest import PROJECT
from pf.sweep import load_sweep, run_status

RESULTS = PROJECT / "results"
SWEEPS = sorted(path for path in (PROJECT / "notebooks" / "sweeps").glob("*.yaml")
                if (RESULTS / path.stem).is_dir())
# A path from the root of some machine, at the start of a table cell or a quoted value.
ABSOLUTE_IN_TEXT = re.compile(r"""(^|[\s,|("'=:])/[\w.-]+/[\w.-]+""")


def test_every_committed_sweep_is_checked():
    assert {path.stem for path in SWEEPS} >= {"demo", "cifar10_cpu", "converged", "norms",
                                             "score_extrapolation"}


@pytest.mark.parametrize("sweep", SWEEPS, ids=lambda path: path.stem)
def test_every_committed_run_is_recognised_as_done(sweep):
    _, runs = load_sweep(sweep, RESULTS)
    folders = {path.parent.name for path in (RESULTS / sweep.stem).glob("*/metrics.json")}
    assert folders <= {run.run_id for run in runs}  # no run that the sweep no longer has
    committed = [run for run in runs if run.run_id in folders]
    assert {run.run_id: run_status(run) for run in committed} == dict.fromkeys(folders, "done")
    assert folders == {run.run_id for run in runs}  # every study is finished: it has every run


def _strings(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def _absolute(text: str) -> bool:
    return text.startswith("/") or ":/" in text.replace("://", "") or text.startswith("~")


def test_no_committed_record_names_an_absolute_path():
    found = []
    for path in sorted(RESULTS.rglob("*")):
        if path.suffix == ".json":
            found += [(path, text) for text in _strings(json.loads(path.read_text()))
                      if _absolute(text)]
        elif path.suffix in (".csv", ".md"):
            found += [(path, match.group()) for match in
                      ABSOLUTE_IN_TEXT.finditer(path.read_text())]
    assert not found, f"{len(found)} absolute paths, e.g. {found[:3]}"


@pytest.mark.parametrize("text, absolute", [
    ("/work/main/notebooks/prunefuse.ipynb", True), ("imagefolder:/data/cifar.tar.gz", True),
    ("notebooks/prunefuse.ipynb", False), ("../reference-cache", False),
    ("https://arxiv.org/abs/2501.01118", False), ("cifar10_jpeg", False)])
def test_what_counts_as_an_absolute_path(text, absolute):
    assert _absolute(text) == absolute


def test_absolute_paths_are_found_in_tables_too():
    assert ABSOLUTE_IN_TEXT.search("| digits | /work/shared/data/x.tar.gz |")
    assert ABSOLUTE_IN_TEXT.search('dataset,"/home/me/cifar"')
    assert not ABSOLUTE_IN_TEXT.search("| MACs / s | 10 % / 30 % | notebooks/prunefuse.ipynb |")


# The README's reading of the paper's four claims, a column per study: every interval and
# cost ratio it quotes must be one its study's claims table (pf figures) holds.
CLAIM_COLUMNS = {1: "cifar10_cpu", 2: "converged"}
QUOTED = re.compile(r"[+-]\d+\.\d\d \[[+-]\d+\.\d\d, [+-]\d+\.\d\d\]|\b\d\.\d{3}x")


def _claims_rows(readme: str) -> list[list[str]]:
    section = readme.split("### The paper's four claims, in both regimes", 1)[1]
    section = section.split("\n#", 1)[0]
    return [[cell.strip() for cell in line.strip("|").split("|")]
            for line in section.splitlines() if re.match(r"\| \d\. ", line)]


def test_the_readme_quotes_the_claims_tables_of_its_studies():
    rows = _claims_rows((PROJECT / "README.md").read_text())
    assert [row[0][:2] for row in rows] == ["1.", "2.", "3.", "4."]
    for column, sweep in CLAIM_COLUMNS.items():
        table = (RESULTS / sweep / "figures" / "claims.md").read_text()
        for row in rows:
            missing = [quote for quote in QUOTED.findall(row[column]) if quote not in table]
            assert not missing, f"{sweep}, claim {row[0][:2]}: not in its claims.md: {missing}"


def test_a_quote_the_claims_table_lacks_would_be_found():
    rows = _claims_rows("### The paper's four claims, in both regimes\n\n| claim | a | b |\n"
                        "| 1. x | area +2.11 [-3.98, +8.20] at 0.253x | |\n## next\n| 2. y | |")
    assert rows == [["1. x", "area +2.11 [-3.98, +8.20] at 0.253x", ""]]
    assert QUOTED.findall(rows[0][1]) == ["+2.11 [-3.98, +8.20]", "0.253x"]
