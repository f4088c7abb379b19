"""Workers' BLAS threads leave the gateway a core (`worker_blas_threads`), unless the operator
set thread counts of their own."""

from __future__ import annotations

from pathlib import Path

from coldbrew.backends.threads import worker_thread_env
from coldbrew.config import Settings


def test_a_worker_leaves_the_gateway_a_core_by_default(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert worker_thread_env(settings, {}, 2)["OPENBLAS_NUM_THREADS"] == "1"
    assert worker_thread_env(settings, {}, 16)["MKL_NUM_THREADS"] == "15"
    assert worker_thread_env(settings, {}, 1)["OPENBLAS_NUM_THREADS"] == "1"
    assert worker_thread_env(settings, {}, None)["OPENBLAS_NUM_THREADS"] == "1"


def test_the_operators_thread_counts_win(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert worker_thread_env(settings, {"OMP_NUM_THREADS": "4"}, 2) == {}
    assert worker_thread_env(settings, {"OPENBLAS_NUM_THREADS": "2"}, 2) == {}


def test_the_setting_sets_the_count(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, worker_blas_threads=2)
    assert worker_thread_env(settings, {"OMP_NUM_THREADS": "4"}, 2) == {
        "OPENBLAS_NUM_THREADS": "2",
        "MKL_NUM_THREADS": "2",
    }
