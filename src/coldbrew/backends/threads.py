"""How many BLAS threads a worker computes with: one fewer than the cores by default, so the
gateway keeps a core to itself (on 2 shared cores a worker with 2 BLAS threads computed 2.3-2.6x
slower under load: docs/busy.md); an operator's own thread variables win."""

from __future__ import annotations

from collections.abc import Mapping

from coldbrew.config import Settings

#: The thread variables an operator may set for the server (the workers inherit them).
BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def worker_thread_env(
    settings: Settings, environ: Mapping[str, str], cores: int | None
) -> dict[str, str]:
    """The BLAS thread count every worker and template starts with (`worker_blas_threads`)."""
    threads = settings.worker_blas_threads
    if threads is None:
        if any(environ.get(var) for var in BLAS_THREAD_VARS):
            return {}  # the operator's own thread settings, as before
        threads = max(1, (cores or 1) - 1)
    return {"OPENBLAS_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
