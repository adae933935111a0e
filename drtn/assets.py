"""Locate and validate the asset folder (BFM-derived 3DMM files, teacher model, detector).

The folder is chosen, in order, by an explicit argument (``--assets``), the ``DRTN_ASSETS``
environment variable, or the per-user cache directory ``~/.cache/drtn/assets``. Nothing is
downloaded: a missing file raises :class:`AssetError` naming the file and how to supply it; a file that exists
but cannot be read (corrupt, truncated, the wrong format or content) raises :class:`AssetReadError`, one line
naming the file (:func:`load_json_asset`, :func:`load_pickle_asset`, :func:`load_npy_asset`).
"""
from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_VAR = "DRTN_ASSETS"

# Files each part of the product needs, relative to the asset folder.
BFM_FILES = (
    "bfm/param_mean_std_62d_120x120.pkl",
    "bfm/landmarks68_bases_v2.json",
    "bfm/Model_PAF.pkl",
    "bfm/u_shp.npy",
    "bfm/u_exp.npy",
    "bfm/indices.npy",
    "bfm/tri.pkl",
)
TEACHER_FILE = "teacher/3ddfa_v2_mb05_120x120.onnx"
ICT_FILE = "ict/ict_face_area_model.npz"


class AssetError(FileNotFoundError):
    """An asset folder or file is missing; the message says which and how to supply it."""


class AssetReadError(ValueError):
    """An asset file exists but cannot be read; the one-line message names the file."""


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__


def _check_keys(path: Path, value: Any, keys: tuple[str, ...]) -> Any:
    if keys:
        if not isinstance(value, dict):
            raise AssetReadError(f"cannot read asset {path}: expected a mapping with {list(keys)}, got {type(value).__name__}")
        missing = [key for key in keys if key not in value]
        if missing:
            raise AssetReadError(f"cannot read asset {path}: missing entries {missing} (a wrong or damaged file)")
    return value


def load_json_asset(path: str | os.PathLike, keys: tuple[str, ...] = ()) -> Any:
    """The JSON value in ``path`` (a mapping holding ``keys`` when given).

    Raises:
        AssetError: the file is missing. AssetReadError: it cannot be read or parsed, or lacks ``keys``.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except FileNotFoundError:
        raise AssetError(f"asset file missing: {path}") from None
    except (OSError, ValueError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise AssetReadError(f"cannot read asset {path}: not valid JSON ({_one_line(error)}); replace it from the shared assets/ folder") from None
    return _check_keys(path, value, keys)


def load_pickle_asset(path: str | os.PathLike, keys: tuple[str, ...] = ()) -> Any:
    """The object pickled in ``path`` (a mapping holding ``keys`` when given). Only load trusted asset files.

    Raises:
        AssetError: the file is missing. AssetReadError: it cannot be unpickled, or lacks ``keys``.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            value = pickle.load(handle)
    except FileNotFoundError:
        raise AssetError(f"asset file missing: {path}") from None
    except Exception as error:  # noqa: BLE001 - unpickling raises anything (EOFError, UnpicklingError, KeyError...)
        raise AssetReadError(f"cannot read asset {path}: not a valid pickle ({_one_line(error)}); replace it from the shared assets/ folder") from None
    return _check_keys(path, value, keys)


def load_npy_asset(path: str | os.PathLike):
    """The numpy array in ``path`` (``.npy``; pickled objects refused).

    Raises:
        AssetError: the file is missing. AssetReadError: it is not a readable ``.npy`` array.
    """
    import numpy as np

    path = Path(path)
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise AssetError(f"asset file missing: {path}") from None
    except (OSError, ValueError, EOFError) as error:
        reason = "no .npy array header: random bytes, or a pickle" if "allow_pickle" in str(error) else _one_line(error)
        raise AssetReadError(f"cannot read asset {path}: not a valid .npy array ({reason}); replace it from the shared assets/ folder") from None


def default_asset_dir() -> Path:
    """Per-user cache location used when neither ``--assets`` nor ``DRTN_ASSETS`` is given."""
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "drtn" / "assets"


@dataclass(frozen=True)
class Assets:
    """A validated asset folder."""

    root: Path

    def path(self, relative: str) -> Path:
        """Absolute path of ``relative`` inside the folder; raises :class:`AssetError` if absent."""
        full = self.root / relative
        if not full.is_file():
            raise AssetError(
                f"asset file missing: {full} (asset folder {self.root}; set --assets or "
                f"{ENV_VAR} to a folder holding '{relative}', e.g. the shared assets/ folder)"
            )
        return full

    @property
    def teacher_onnx(self) -> Path:
        return self.path(TEACHER_FILE)


def resolve_asset_dir(asset_dir: str | os.PathLike | None = None) -> Path:
    """The asset folder chosen by argument, then ``DRTN_ASSETS``, then the user cache dir."""
    if asset_dir is not None:
        return Path(asset_dir).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return default_asset_dir()


def find_assets(asset_dir: str | os.PathLike | None = None, required: tuple[str, ...] = BFM_FILES) -> Assets:
    """Validate the asset folder and return it.

    Args:
        asset_dir: explicit folder; ``None`` falls back to ``DRTN_ASSETS`` then the cache dir.
        required: relative file paths that must exist.

    Raises:
        AssetError: the folder or one of ``required`` is missing (the first missing file is named).
    """
    root = resolve_asset_dir(asset_dir)
    if not root.is_dir():
        raise AssetError(
            f"asset folder not found: {root} (pass --assets DIR or set {ENV_VAR}=DIR to the folder "
            f"with bfm/ and teacher/, or copy it to {default_asset_dir()})"
        )
    assets = Assets(root.resolve())
    for relative in required:
        assets.path(relative)
    return assets
