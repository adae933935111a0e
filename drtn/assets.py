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
import sys
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
        raise AssetReadError(
            f"cannot read asset {path}: not valid JSON ({_one_line(error)}); replace it from the shared assets/ folder"
        ) from None
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
        raise AssetReadError(
            f"cannot read asset {path}: not a valid pickle ({_one_line(error)}); replace it from the shared assets/ folder"
        ) from None
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
        raise AssetReadError(
            f"cannot read asset {path}: not a valid .npy array ({reason}); replace it from the shared assets/ folder"
        ) from None


CACHE_ENV_VAR = "DRTN_CACHE_DIR"


def platform_cache_home() -> Path:
    """The platform's per-user cache folder: ``$XDG_CACHE_HOME`` or ``~/.cache`` (Linux and other Unix),
    ``~/Library/Caches`` (macOS), ``%LOCALAPPDATA%`` (Windows)."""
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        return Path(local) if local else Path.home() / "AppData" / "Local"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def user_cache_root() -> Path:
    """``$DRTN_CACHE_DIR``, else ``<platform cache>/drtn`` (see :func:`platform_cache_home`)."""
    root = os.environ.get(CACHE_ENV_VAR)
    return Path(root).expanduser() if root else platform_cache_home() / "drtn"


def default_asset_dir() -> Path:
    """Per-user location used when neither ``--assets`` nor ``DRTN_ASSETS`` is given: ``<platform cache>/drtn/assets``
    (``~/.cache/drtn/assets`` on Linux; where ``drtn assets --fetch`` puts the files)."""
    return platform_cache_home() / "drtn" / "assets"


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


# ---------------------------------------------------------------------------------------------- manifest + fetch
_3DDFA_V2 = "https://raw.githubusercontent.com/cleardusk/3DDFA_V2/master/"
_3DDFA = "https://raw.githubusercontent.com/cleardusk/3DDFA/master/"


@dataclass(frozen=True)
class AssetFile:
    """One file of the asset folder: path inside it, pinned SHA-256 and size, public origin (``None``: none known,
    copy it from the shared asset folder), and whether the product needs it (``required``) or only some commands."""

    relative: str
    sha256: str
    size: int
    url: str | None
    required: bool = True


# Checksums of the shared asset folder (../shared/assets/README.md gives every file's origin and licence).
MANIFEST = (
    AssetFile(
        "bfm/param_mean_std_62d_120x120.pkl",
        "090d7150f77cb66c29ddae21e4508fbde59123dcd1dea7facc24a7ed06d1c795",
        713,
        _3DDFA_V2 + "configs/param_mean_std_62d_120x120.pkl",
    ),
    AssetFile(
        "bfm/tri.pkl", "0562a594d8369f7d1c86306522ff76fd3a2c81cf90ba9443893c1191ad0abbb8", 913040, _3DDFA_V2 + "configs/tri.pkl"
    ),
    AssetFile(
        "bfm/indices.npy",
        "b341debcdf26492332c1f96ced438e727e74164d1524cab9cca0aedf6ccd39c8",
        153588,
        _3DDFA_V2 + "configs/indices.npy",
    ),
    AssetFile(
        "bfm/ncc_code.npy",
        "edab94fb09d2e25660d62eb068316becf8998e793dfe2ae3ac89196ebc0af981",
        460508,
        _3DDFA_V2 + "configs/ncc_code.npy",
        required=False,
    ),
    AssetFile(
        "bfm/BFM_UV.mat",
        "60be915f601563e274d9737abd54c6b925e8e737fa1c89d3cd64933315629ce1",
        779401,
        _3DDFA_V2 + "configs/BFM_UV.mat",
        required=False,
    ),
    AssetFile(
        "bfm/Model_PAF.pkl",
        "418713edd25e6c5938cb49e989ff8461d59a6c8bbe5aba3a643e9e77f9bc5e4d",
        2507052,
        _3DDFA + "train.configs/Model_PAF.pkl",
    ),
    AssetFile(
        "bfm/u_shp.npy",
        "8a3b8b5ba3b0526ce3ddd3e287b26e0192c150e477767f374a6e333a365ff7dd",
        638708,
        _3DDFA + "train.configs/u_shp.npy",
    ),
    AssetFile(
        "bfm/u_exp.npy",
        "69049fb360bfff61090f7705ba510ed9bd817da871edbaa69e2fed7df624cf19",
        638708,
        _3DDFA + "train.configs/u_exp.npy",
    ),
    AssetFile(
        "bfm/keypoints_sim.npy",
        "065053f041b03ed32e36641d26fcd9aefef36f6c518899091cdc6038a6246c13",
        1760,
        _3DDFA + "train.configs/keypoints_sim.npy",
        required=False,
    ),
    AssetFile(
        "bfm/u_base.txt",
        "1ea7c3116070aeee720605a4a44ca9db582ac550095c321c3cf65ec925fe43cf",
        2728,
        _3DDFA + "c++/weights/u_base.txt",
        required=False,
    ),
    AssetFile(
        "bfm/w_shp_base.txt",
        "bec9a2189eb77c61ff940c801dcd9e5cd7f1973b6d91949494d9cd7ac121b7f6",
        77567,
        _3DDFA + "c++/weights/w_shp_base.txt",
        required=False,
    ),
    AssetFile(
        "bfm/w_exp_base.txt",
        "4dc637c92c34bfd69faab74cafce23913f2b6181ff00c57a7ab69c1204d20b18",
        22424,
        _3DDFA + "c++/weights/w_exp_base.txt",
        required=False,
    ),
    AssetFile(
        "bfm/landmarks68_bases_v2.json", "3741103cc49af4336b7127e92dcdd1cbb32597ccb8226cca7d774e2952bf5cc2", 236695, None
    ),
    AssetFile(
        "detectors/face_detection_yunet_2023mar.onnx",
        "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
        232589,
        "https://raw.githubusercontent.com/opencv/opencv_zoo/main/models/face_detection_yunet/face_detection_yunet_2023mar.onnx",
    ),
    AssetFile(
        "mediapipe/blaze_face_short_range.tflite",
        "b4578f35940bf5a1a655214a1cce5cab13eba73c1297cd78e1a04c2380b0152f",
        229746,
        "https://storage.googleapis.com/mediapipe-models/face_detector/blaze_face_short_range/float16/1/blaze_face_short_range.tflite",
        required=False,
    ),
    AssetFile(
        "mediapipe/face_landmarker.task",
        "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
        3758596,
        "https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/face_landmarker.task",
        required=False,
    ),
    AssetFile(TEACHER_FILE, "4b0546e2fd13567917956efa8658b6d71fcae0f9c127fbbeb66c64bd341a9c6a", 3387582, None, required=False),
    AssetFile(  # the --detector-model blazeface-onnx detector (MIT; byte-identical to StableView's commit c9aeed5)
        "teacher/blazeface_320.onnx",
        "ef918bc2ed542c89209f0f19b5096e1a097867b916c8c72e79edc1e36118aec2",
        720348,
        "https://raw.githubusercontent.com/Shubhamai/StableView/c9aeed5f2907de1c3287966b2d13d34b9a00e172/assets/model/blazeface-320.onnx",
        required=False,
    ),
    # the blendshape retargeting of video / demo / live (on by default) needs it; derived from ICT-FaceKit (MIT)
    AssetFile(ICT_FILE, "139e562375479b6cabb35cf5f6141784b9eb4d6928615669334dbab293041564", 9379289, None),
)


@dataclass(frozen=True)
class FileStatus:
    """:func:`check_asset_folder` result for one :class:`AssetFile`: ``state`` is ``ok``, ``missing`` or
    ``mismatch`` (wrong size or SHA-256)."""

    file: AssetFile
    state: str

    @property
    def ok(self) -> bool:
        return self.state == "ok"


def file_sha256(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _file_state(path: Path, entry: AssetFile) -> str:
    if not path.is_file():
        return "missing"
    if path.stat().st_size != entry.size or file_sha256(path) != entry.sha256:
        return "mismatch"
    return "ok"


def check_asset_folder(root: str | os.PathLike, manifest: tuple[AssetFile, ...] = MANIFEST) -> list[FileStatus]:
    """Every manifest file of the folder ``root``: present, right size and SHA-256?"""
    root = Path(root)
    return [FileStatus(entry, _file_state(root / entry.relative, entry)) for entry in manifest]


def fetch_assets(
    root: str | os.PathLike,
    manifest: tuple[AssetFile, ...] = MANIFEST,
    mirror: str | None = None,
    timeout_s: float = 60.0,
) -> list[FileStatus]:
    """Download every file of ``manifest`` that is missing or wrong in ``root`` from its public origin.

    Each download is checked against the pinned size and SHA-256 before it is moved into place (atomically); a
    file without a known origin is left as it is (its status says so).

    Args:
        root: the asset folder to fill (created if needed).
        manifest: the files (default :data:`MANIFEST`).
        mirror: instead of each file's origin, fetch ``<mirror>/<relative path>`` (any ``urllib`` URL, e.g. a
            ``file://`` copy of an asset folder; the tests use one, never the network).
        timeout_s: per-request timeout.
    Returns:
        The status of every manifest file after fetching.
    Raises:
        AssetError: a download failed or did not match its checksum (the message names file and URL); files
            fetched before it stay in place.
    """
    import urllib.request

    from drtn.outputs import atomic_write

    root = Path(root)
    for status in check_asset_folder(root, manifest):
        entry = status.file
        url = f"{mirror.rstrip('/')}/{entry.relative}" if mirror else entry.url
        if status.ok or url is None:
            continue
        # downloaded to a temporary file beside the target, checked, then renamed; removed on any error
        with atomic_write(root / entry.relative, temp_suffix=".part") as handle:
            try:
                with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - pinned origins or the user's mirror
                    while chunk := response.read(1 << 20):
                        handle.write(chunk)
            except OSError as error:  # URLError is an OSError
                raise AssetError(f"cannot fetch {entry.relative} from {url}: {error}") from None
            handle.flush()
            if _file_state(Path(handle.name), entry) != "ok":
                raise AssetError(
                    f"{url}: checksum mismatch for {entry.relative} (expected sha256 {entry.sha256[:16]}..., {entry.size} bytes); not installed"
                )
    return check_asset_folder(root, manifest)
