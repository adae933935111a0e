"""Thread budget of the real-time commands.

Each frame does many small matrix products (landmarks, dense vertices, pose decompositions). OpenBLAS
spreads even these over its worker threads, which then spin-wait between calls and take the cores that
ONNX Runtime and the OpenGL rasteriser (llvmpipe) need: on the 2-core reference machine, one BLAS thread
raised the pipeline benchmark from ~30 to ~43 FPS with identical results. The entry points (``video``,
``live``, ``bench --pipeline``) call :func:`limit_blas_threads`; the library itself changes nothing
process-wide.
"""

from __future__ import annotations

import ctypes
import logging
import os

LOGGER = logging.getLogger(__name__)

_SET_THREADS_SYMBOLS = ("openblas_set_num_threads", "openblas_set_num_threads64_", "scipy_openblas_set_num_threads64_")


def _loaded_openblas_libraries() -> list[str]:
    """Paths of the OpenBLAS shared libraries mapped into this process (Linux; empty elsewhere)."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as handle:
            paths = {line.split()[-1] for line in handle if ".so" in line and "openblas" in line.lower()}
    except OSError:
        return []
    return sorted(path for path in paths if os.path.isfile(path))


def limit_blas_threads(count: int = 1) -> bool:
    """Limit the BLAS thread pool of numpy (and anything sharing its library) to ``count`` threads.

    Uses ``threadpoolctl`` when installed, else calls OpenBLAS's ``openblas_set_num_threads`` directly.
    Returns whether a limit was applied (False when the BLAS in use is unknown: nothing changes then).
    """
    if count < 1:
        raise ValueError(f"limit_blas_threads: expected count >= 1, got {count}")
    import numpy  # noqa: F401  (loads numpy's BLAS, so it can be found)

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        pass
    else:
        threadpool_limits(count, user_api="blas")
        return True
    applied = False
    for path in _loaded_openblas_libraries():
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in _SET_THREADS_SYMBOLS:
            setter = getattr(library, symbol, None)
            if setter is not None:
                setter(ctypes.c_int(count))
                applied = True
                break
    LOGGER.debug("BLAS threads limited to %d: %s", count, applied)
    return applied
