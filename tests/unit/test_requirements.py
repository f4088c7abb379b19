"""What a model directory asks to have installed, and the PyTorch trap, before uv runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from coldbrew.backends.envs import Environments, Interpreter
from coldbrew.control.requirements import (
    check_resolved_torch,
    normalized_name,
    read_requirements,
)
from coldbrew.errors import SpecError


def _dir(tmp_path: Path, **files: str) -> Path:
    for name, text in files.items():
        (tmp_path / name.replace("__", "/")).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name.replace("__", "/")).write_text(text)
    return tmp_path


def test_a_directory_without_requirements_asks_for_nothing(tmp_path: Path) -> None:
    assert not read_requirements(_dir(tmp_path, **{"app.py": "x = 1\n"}))


def test_requirements_txt_pyproject_and_cog_yaml_are_combined(tmp_path: Path) -> None:
    found = read_requirements(
        _dir(
            tmp_path,
            **{
                "requirements.txt": "# pinned\nsix==1.17.0  # inline\n\npackaging>=24\n",
                "pyproject.toml": '[project]\nname = "m"\ndependencies = ["six==1.17.0", "idna"]\n',
                "cog.yaml": "build:\n  python_packages:\n    - attrs==25.1.0\n"
                "  python_requirements: extra.txt\npredict: predict.py:P\n",
                "extra.txt": "certifi\n",
            },
        )
    )
    assert found.lines == ("six==1.17.0", "packaging>=24", "idna", "attrs==25.1.0", "certifi")
    assert found.files == ("requirements.txt", "pyproject.toml", "cog.yaml")


@pytest.mark.parametrize(
    "line",
    [
        pytest.param("-r ../../secrets.txt", id="option"),
        pytest.param("/root/private-package", id="absolute-path"),
        pytest.param("./vendored", id="relative-path"),
        pytest.param("pkg @ file:///etc/passwd", id="file-url"),
    ],
)
def test_options_and_local_paths_are_refused(tmp_path: Path, line: str) -> None:
    with pytest.raises(SpecError, match="not a package requirement"):
        read_requirements(_dir(tmp_path, **{"requirements.txt": line + "\n"}))


def test_a_cog_requirements_file_outside_the_directory_is_refused(tmp_path: Path) -> None:
    cog = "build:\n  python_requirements: ../outside.txt\n"
    (tmp_path / "outside.txt").write_text("six\n")
    with pytest.raises(SpecError, match="not a file in the directory"):
        read_requirements(_dir(tmp_path / "model", **{"cog.yaml": cog}))


@pytest.mark.parametrize(
    "line",
    [
        pytest.param("torch", id="bare"),
        pytest.param("torch>=2.0", id="range"),
        pytest.param("Torch==2.*", id="wildcard"),
        pytest.param("torch~=2.13.0", id="compatible"),
    ],
)
def test_an_unpinned_torch_is_refused_with_the_pin_that_fixes_it(tmp_path: Path, line: str) -> None:
    with pytest.raises(SpecError) as caught:
        read_requirements(_dir(tmp_path, **{"requirements.txt": f"numpy\n{line}\n"}))
    assert "CUDA build" in caught.value.message
    assert "torch==2.13.0" in caught.value.hint


@pytest.mark.parametrize("line", ["torch==2.13.0", "torch == 2.13.0 ; python_version >= '3.9'"])
def test_a_pinned_torch_is_taken(tmp_path: Path, line: str) -> None:
    found = read_requirements(_dir(tmp_path, **{"requirements.txt": line + "\n"}))
    assert found.lines == (line,)


def test_torch_pulled_in_by_another_package_is_refused_unless_pinned() -> None:
    pinned = "sentence-transformers==5.0.0\ntorch==2.14.1\n"
    with pytest.raises(SpecError, match="through another package"):
        check_resolved_torch(pinned, ("sentence-transformers",))
    check_resolved_torch(pinned, ("sentence-transformers", "torch==2.14.1"))


def test_names_are_normalized() -> None:
    assert normalized_name("Torch_Vision[extra]>=1") == "torch-vision"
    assert normalized_name("==1") is None


def test_an_environment_runs_through_boot_with_only_coldbrew_on_its_path(tmp_path: Path) -> None:
    envs = Environments(tmp_path / "envs", find_links=())
    python = envs.interpreter("abc")
    assert python.module("coldbrew.runtime.worker", "x") == [
        str(tmp_path / "envs" / "abc" / "bin" / "python"),
        "-S",
        "-m",
        "coldbrew.runtime.boot",
        "coldbrew.runtime.worker",
        "x",
    ]
    assert python.env == {"PYTHONPATH": str(tmp_path / "envs" / "abc" / "coldbrew-path")}
    assert envs.interpreter(None) == Interpreter()


def test_collect_removes_what_no_version_uses_and_their_artifact_links(tmp_path: Path) -> None:
    envs = Environments(tmp_path / "envs", find_links=())
    for key in ("used", "unused", "held"):
        (tmp_path / "envs" / key).mkdir(parents=True)
        (tmp_path / "envs" / key / ".coldbrew-ready").write_text("")
    envs.link_artifact("acme", "sha1", "unused")
    envs.link_artifact("acme", "sha2", "used")
    envs.remember(("six==1.16.0",), "unused")
    envs.remember(("six==1.17.0",), "used")
    assert envs.for_requirements(("six==1.16.0",)) == "unused"
    with envs.holding("held"):
        assert envs.collect({"used"}) == ["unused"]
    assert envs.for_artifact("acme", "sha2") == "used"
    assert envs.for_artifact("acme", "sha1") is None
    assert not (tmp_path / "envs" / "artifacts" / "acme" / "sha1").exists()
    assert envs.for_requirements(("six==1.16.0",)) is None
    assert envs.for_requirements(("six==1.17.0",)) == "used"
    assert len(list((tmp_path / "envs" / "requested").glob("*/*"))) == 1
    assert envs.collect({"used"}) == ["held"]


def test_collect_points_kept_environments_at_the_running_coldbrew(tmp_path: Path) -> None:
    """After coldbrew is reinstalled elsewhere, the versions' environments still import it."""
    import coldbrew

    envs = Environments(tmp_path / "envs", find_links=())
    link = tmp_path / "envs" / "kept" / "coldbrew-path" / "coldbrew"
    link.parent.mkdir(parents=True)
    (tmp_path / "envs" / "kept" / ".coldbrew-ready").write_text("")
    link.symlink_to(tmp_path / "old-install" / "coldbrew")
    assert envs.collect({"kept"}) == []
    assert link.resolve() == Path(coldbrew.__file__).resolve().parent
