"""drtn.assets: one asset setting (argument > DRTN_ASSETS > user cache) and errors that say what is missing."""
from __future__ import annotations

from pathlib import Path

import pytest

from drtn.assets import BFM_FILES, ENV_VAR, AssetError, default_asset_dir, find_assets, resolve_asset_dir


def make_asset_dir(root: Path, files=BFM_FILES) -> Path:
    for relative in files:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b"")
    return root


def test_resolution_order(tmp_path, monkeypatch):
    explicit, from_env, cache = tmp_path / "explicit", tmp_path / "env", tmp_path / "cache"
    monkeypatch.setenv(ENV_VAR, str(from_env))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    assert resolve_asset_dir(explicit) == explicit
    assert resolve_asset_dir() == from_env
    monkeypatch.delenv(ENV_VAR)
    assert resolve_asset_dir() == cache / "drtn" / "assets" == default_asset_dir()


def test_explicit_folder_beats_environment(tmp_path, monkeypatch):
    good = make_asset_dir(tmp_path / "good")
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "does-not-exist"))
    assert find_assets(good).root == good.resolve()
    monkeypatch.setenv(ENV_VAR, str(good))
    assert find_assets().root == good.resolve()


def test_missing_folder_error_mentions_setting(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    missing = tmp_path / "nowhere"
    with pytest.raises(AssetError) as error:
        find_assets(missing)
    message = str(error.value)
    assert str(missing) in message and ENV_VAR in message and "--assets" in message
    assert isinstance(error.value, FileNotFoundError)


def test_missing_file_error_names_the_file(tmp_path):
    root = make_asset_dir(tmp_path / "partial", [f for f in BFM_FILES if f != "bfm/Model_PAF.pkl"])
    with pytest.raises(AssetError) as error:
        find_assets(root)
    message = str(error.value)
    assert "bfm/Model_PAF.pkl" in message and ENV_VAR in message


def test_optional_file_checked_on_use(tmp_path):
    assets = find_assets(make_asset_dir(tmp_path / "bfm-only"))
    with pytest.raises(AssetError, match="teacher/3ddfa_v2_mb05_120x120.onnx"):
        assets.teacher_onnx
    assert assets.path("bfm/tri.pkl") == assets.root / "bfm/tri.pkl"


def test_shared_assets_are_complete(assets_dir):
    assets = find_assets(assets_dir)
    assert assets.teacher_onnx.is_file()
