"""The catalog contract (`coldbrew.store.catalog.Catalog`): accounts, endpoints, versions."""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit.store_contract.helpers import SCHEMA, SPEC, deploy, new_job

from coldbrew.store.models import (
    Account,
    JobStatus,
    Version,
)


def test_account_round_trip(store: Any) -> None:
    created = store.create_account("acme", "whsec_a", 5.0)
    assert created == Account(name="acme", webhook_secret="whsec_a", created_at=5.0)
    assert store.get_account("acme") == created
    assert store.get_account("nobody") is None


def test_creating_an_account_again_keeps_its_secret(store: Any) -> None:
    store.create_account("acme", "whsec_a", 5.0)
    again = store.create_account("acme", "whsec_other", 6.0)
    assert again == Account(name="acme", webhook_secret="whsec_a", created_at=5.0)
    assert store.count_accounts() == 1


def test_count_accounts(store: Any) -> None:
    assert store.count_accounts() == 0
    store.create_account("acme", "s", 1.0)
    store.create_account("beta", "s", 1.0)
    assert store.count_accounts() == 2


def test_first_deploy_creates_version_one(store: Any) -> None:
    version, created = store.add_version("acme", "echo", "sha-1", "app", "Echo", SPEC, SCHEMA, 10.0)
    assert created is True
    assert (version.account, version.endpoint, version.number) == ("acme", "echo", 1)
    assert (version.artifact_sha, version.module, version.class_name) == ("sha-1", "app", "Echo")
    assert (version.spec, version.input_schema, version.created_at) == (SPEC, SCHEMA, 10.0)
    endpoint = store.get_endpoint("acme", "echo")
    assert endpoint.current_version_id == version.id
    assert store.get_version(version.id) == version


def test_identical_redeploy_keeps_the_version(store: Any) -> None:
    first, _ = store.add_version("acme", "echo", "sha-1", "app", "Echo", SPEC, SCHEMA, 10.0)
    reordered = dict(reversed(list(SPEC.items())))
    again, created = store.add_version(
        "acme", "echo", "sha-1", "app", "Echo", reordered, SCHEMA, 20.0
    )
    assert (again, created) == (first, False)


@pytest.mark.parametrize(
    "change",
    [
        {"artifact_sha": "sha-2"},
        {"module": "serve"},
        {"class_name": "Echo2"},
        {"spec": SPEC | {"max_workers": 8}},
        {"input_schema": SCHEMA | {"required": ["text"]}},
    ],
    ids=["sha", "module", "class", "spec", "schema"],
)
def test_changed_deploy_makes_version_two_current(store: Any, change: dict[str, Any]) -> None:
    first = deploy(store)
    args: dict[str, Any] = {
        "artifact_sha": "sha-1",
        "module": "app",
        "class_name": "Echo",
        "spec": SPEC,
        "input_schema": SCHEMA,
    } | change
    second, created = store.add_version("acme", "echo", now=20.0, **args)
    assert created is True
    assert second.number == 2
    assert store.get_endpoint("acme", "echo").current_version_id == second.id
    assert store.get_version(first.id) == first


def test_version_numbers_count_per_endpoint(store: Any) -> None:
    deploy(store, "echo")
    deploy(store, "echo", artifact_sha="sha-2")
    other = deploy(store, "embed")
    assert other.number == 1


def test_list_endpoints_by_account(store: Any) -> None:
    deploy(store, "zeta")
    deploy(store, "alpha")
    deploy(store, "echo", account="beta")
    assert [e.name for e in store.list_endpoints("acme")] == ["alpha", "zeta"]
    assert [(e.account, e.name) for e in store.list_endpoints(None)] == [
        ("acme", "alpha"),
        ("beta", "echo"),
        ("acme", "zeta"),
    ]
    assert store.get_endpoint("beta", "alpha") is None


def test_unknown_version_is_a_key_error(store: Any) -> None:
    with pytest.raises(KeyError):
        store.get_version(999)


def test_delete_endpoint_cancels_its_queue(store: Any, version: Version) -> None:
    new_job(store, version, "j1")
    deleted = store.delete_endpoint("acme", "echo", 50.0)
    assert deleted.id == version.endpoint_id
    assert store.get_endpoint("acme", "echo") is None
    assert store.list_endpoints("acme") == []
    assert store.get_job("j1").status is JobStatus.CANCELLED
    assert store.delete_endpoint("acme", "echo", 51.0) is None
