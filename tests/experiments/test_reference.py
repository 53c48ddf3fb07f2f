"""The parameter reference (docs/parameters.md) is generated from the configs and current."""

import dataclasses

import pytest

from conftest import PROJECT
from pf.experiments.config import ActiveLearningConfig, DataPruningConfig, RunConfig
from pf.experiments.reference import BEGIN, END, field_comments, parameter_reference
from pf.experiments.settings import setting

PARAMETERS = PROJECT / "docs" / "parameters.md"


def test_the_committed_reference_is_what_the_configs_say():
    text = PARAMETERS.read_text()
    block = text[text.index(BEGIN):text.index(END) + len(END)]
    assert block == parameter_reference(), (
        "docs/parameters.md is stale: python -m pf.experiments.reference docs/parameters.md")


@pytest.mark.parametrize("config_class", [RunConfig, ActiveLearningConfig, DataPruningConfig])
def test_every_field_is_described_once_where_it_is_declared(config_class):
    comments = field_comments(config_class)
    declared = config_class.__dict__["__annotations__"]
    assert set(comments) == set(declared)
    assert all(comment for _, comment in comments.values()), "a field without a comment"
    reference = parameter_reference()
    for field in dataclasses.fields(config_class):
        assert f"| `{field.name}` |" in reference


@dataclasses.dataclass
class Toy:
    # --- first part ---------------------------------------------------------
    # two lines
    # above it
    alpha: int = setting(1, at_least=0)
    beta: str = setting("b", choices=("a", "b"))  # inline only
    # --- second ---
    # above, and
    gamma: list = setting([], check=None)  # inline too


def test_comments_above_and_beside_a_field_are_joined_under_its_section():
    assert field_comments(Toy) == {"alpha": ("first part", "two lines above it"),
                                   "beta": ("first part", "inline only"),
                                   "gamma": ("second", "above, and inline too")}
