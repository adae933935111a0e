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


# ---------------------------------------------------------------------------- manifest, fetch, cache folders
def test_shared_assets_match_the_pinned_checksums(assets_dir):
    from drtn.assets import check_asset_folder

    bad = [(s.file.relative, s.state) for s in check_asset_folder(assets_dir) if not s.ok]
    assert bad == []


def test_fetch_from_a_local_mirror_fills_a_folder(assets_dir, tmp_path):
    """The download path end to end, from a file:// URL (never the network)."""
    from drtn.assets import MANIFEST, check_asset_folder, fetch_assets

    target = tmp_path / "assets"
    before = check_asset_folder(target)
    assert {s.state for s in before} == {"missing"}
    after = fetch_assets(target, mirror=Path(assets_dir).resolve().as_uri())
    assert all(s.ok for s in after) and len(after) == len(MANIFEST)
    assert find_assets(target).root == target.resolve()  # a usable asset folder
    assert not list(target.rglob("*.part"))  # no temporary files left


def test_fetch_rejects_a_file_with_the_wrong_checksum(assets_dir, tmp_path):
    import shutil

    from drtn.assets import AssetFile, fetch_assets

    mirror = tmp_path / "mirror"
    (mirror / "bfm").mkdir(parents=True)
    shutil.copy(Path(assets_dir) / "bfm/tri.pkl", mirror / "bfm/tri.pkl")
    (mirror / "bfm/indices.npy").write_bytes(b"tampered")
    manifest = (
        AssetFile("bfm/tri.pkl", "0562a594d8369f7d1c86306522ff76fd3a2c81cf90ba9443893c1191ad0abbb8", 913040, None),
        AssetFile("bfm/indices.npy", "b341debcdf26492332c1f96ced438e727e74164d1524cab9cca0aedf6ccd39c8", 153588, None),
    )
    target = tmp_path / "assets"
    with pytest.raises(AssetError, match=r"checksum mismatch for bfm/indices.npy"):
        fetch_assets(target, manifest, mirror=mirror.as_uri())
    assert (target / "bfm/tri.pkl").is_file()  # fetched before the bad one
    assert sorted(p.name for p in (target / "bfm").iterdir()) == ["tri.pkl"]  # nothing else, no partial file


def test_fetch_names_an_unreachable_origin(tmp_path):
    from drtn.assets import AssetFile, fetch_assets

    manifest = (AssetFile("bfm/tri.pkl", "0" * 64, 1, None),)
    with pytest.raises(AssetError, match=r"cannot fetch bfm/tri.pkl from file://.*/nowhere/bfm/tri.pkl"):
        fetch_assets(tmp_path / "assets", manifest, mirror=(tmp_path / "nowhere").as_uri())


@pytest.mark.parametrize(
    "platform, env, expected",
    [
        ("linux", {"XDG_CACHE_HOME": "/xdg"}, Path("/xdg")),
        ("linux", {}, Path.home() / ".cache"),
        ("darwin", {}, Path.home() / "Library" / "Caches"),
        ("win32", {"LOCALAPPDATA": "C:/Users/me/AppData/Local"}, Path("C:/Users/me/AppData/Local")),
    ],
)
def test_platform_cache_folders(monkeypatch, platform, env, expected):
    import drtn.assets as assets_module

    monkeypatch.setattr(assets_module.sys, "platform", platform)
    for name in ("XDG_CACHE_HOME", "LOCALAPPDATA", "DRTN_CACHE_DIR", ENV_VAR):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert assets_module.platform_cache_home() == expected
    assert default_asset_dir() == expected / "drtn" / "assets" == resolve_asset_dir()
    assert assets_module.user_cache_root() == expected / "drtn"
    monkeypatch.setenv("DRTN_CACHE_DIR", "/elsewhere")
    assert assets_module.user_cache_root() == Path("/elsewhere")
