"""KServe model files at deploy time (found by reading them, never importing kserve)."""

from __future__ import annotations

from pathlib import Path

import pytest

from coldbrew.errors import SpecError
from coldbrew.runtime.adapters import kserve
from coldbrew.runtime.loader import discover

MODEL = """
import kserve


class Scorer(kserve.Model):
    def predict(self, payload, headers=None):
        return payload


class Other(kserve.Model):
    pass


if __name__ == "__main__":
    kserve.ModelServer().start([Scorer("scorer-v1"), Other(name="other")])
"""


def test_each_model_class_is_an_endpoint_named_as_the_file_names_it(tmp_path: Path) -> None:
    (tmp_path / "serve.py").write_text(MODEL)
    found = discover(tmp_path)
    assert sorted(found) == ["other", "scorer-v1"]
    module, model = found["scorer-v1"]
    assert (module, model.cls.__name__) == (kserve.ADAPTER_MODULE, "serve.Scorer")


def test_the_worker_class_is_built_from_the_recorded_name() -> None:
    cls = kserve.__getattr__("serve.Scorer")
    assert issubclass(cls, kserve.KServeAdapter)
    assert (cls.user_module, cls.user_class) == ("serve", "Scorer")
    with pytest.raises(AttributeError):
        kserve.__getattr__("nodot")


def test_a_file_without_a_kserve_import_is_not_a_kserve_model(tmp_path: Path) -> None:
    (tmp_path / "x.py").write_text("class Model: ...\nclass A(Model): ...\n")
    with pytest.raises(SpecError, match="no model found"):
        discover(tmp_path)


def test_a_name_that_is_not_an_endpoint_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text('from kserve import Model\nclass A(Model): ...\nA("Bad Name")\n')
    with pytest.raises(SpecError, match="not a valid endpoint name"):
        discover(tmp_path)
