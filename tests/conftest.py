"""Shared fixtures: the asset folder and the shared samples (../shared beside the repo, or $DRTN_ASSETS)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DRTN_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def assets_dir() -> Path:
    path = Path(os.environ.get("DRTN_ASSETS", SHARED / "assets"))
    if not (path / "bfm").is_dir():
        pytest.skip(f"asset folder not found at {path} (set DRTN_ASSETS)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared folder not found at {SHARED} (set DRTN_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def morphable(assets_dir):
    from drtn.morphable import MorphableModel

    return MorphableModel.load(str(assets_dir))
