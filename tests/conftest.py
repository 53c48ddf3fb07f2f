"""Shared fixtures. Tests run on CPU with a private data directory unless stated."""

from pathlib import Path

import pytest
import torch

from pf.data import load_dataset

SHARED_CIFAR10 = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"


@pytest.fixture(autouse=True)
def _private_data_dir(tmp_path_factory, monkeypatch):
    """Point PF_DATA at a per-session folder so tests never touch the user's cache."""
    monkeypatch.setenv("PF_DATA", str(tmp_path_factory.getbasetemp() / "pf-data"))
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def synthetic():
    """The small learnable dataset every trainer test uses."""
    return load_dataset("synthetic")
