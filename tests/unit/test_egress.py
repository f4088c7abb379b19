"""The webhook egress policy: which resolved addresses a delivery may connect to."""

from __future__ import annotations

import ipaddress

import pytest

from coldbrew.config import Settings
from coldbrew.integrations.egress import EgressPolicy, EgressRefused

STRICT = EgressPolicy(allow_loopback=False, allow_private=False)
OPEN = EgressPolicy(allow_loopback=True, allow_private=True)


@pytest.mark.parametrize(
    ("address", "strict", "open_"),
    [
        pytest.param("169.254.169.254", "link-local", "link-local", id="aws-gcp-azure-metadata"),
        pytest.param("169.254.1.1", "link-local", "link-local", id="ipv4-link-local"),
        pytest.param("fe80::1", "link-local", "link-local", id="ipv6-link-local"),
        pytest.param("100.100.100.200", "link-local", "link-local", id="alibaba-metadata"),
        pytest.param("fd00:ec2::254", "link-local", "link-local", id="aws-ipv6-metadata"),
        pytest.param("168.63.129.16", "link-local", "link-local", id="azure-wireserver"),
        pytest.param("::ffff:169.254.169.254", "link-local", "link-local", id="v4-mapped"),
        pytest.param("0.0.0.0", "link-local", "link-local", id="this-host"),
        # 6to4: a host with a 6to4 tunnel sends these to the embedded IPv4 address
        pytest.param("2002:a9fe:a9fe::1", "link-local", "link-local", id="6to4-metadata"),
        pytest.param("2002:7f00:1::1", "loopback", None, id="6to4-loopback"),
        pytest.param("2002:0a01:0203::1", "private", None, id="6to4-private"),
        pytest.param("127.0.0.1", "loopback", None, id="loopback"),
        pytest.param("::1", "loopback", None, id="ipv6-loopback"),
        pytest.param("10.1.2.3", "private", None, id="rfc1918-10"),
        pytest.param("192.168.0.10", "private", None, id="rfc1918-192"),
        pytest.param("172.16.5.4", "private", None, id="rfc1918-172"),
        pytest.param("100.64.0.1", "private", None, id="cgnat"),
        pytest.param("fd12::1", "private", None, id="ipv6-ula"),
        pytest.param("224.0.0.1", "unicast", "unicast", id="multicast"),
        pytest.param("93.184.216.34", None, None, id="public-v4"),
        pytest.param("2606:4700::1111", None, None, id="public-v6"),
    ],
)
def test_refusals(address: str, strict: str | None, open_: str | None) -> None:
    ip = ipaddress.ip_address(address)
    for policy, expected in ((STRICT, strict), (OPEN, open_)):
        reason = policy.refusal(ip)
        assert (reason is None) == (expected is None), (policy, reason)
        if expected is not None:
            assert reason is not None and expected in reason


def test_loopback_is_allowed_by_default_only_on_a_loopback_gateway() -> None:
    assert EgressPolicy.from_settings(Settings(host="127.0.0.1")).allow_loopback
    assert not EgressPolicy.from_settings(Settings(host="0.0.0.0")).allow_loopback
    assert not EgressPolicy.from_settings(
        Settings(host="127.0.0.1", webhook_allow_loopback=False)
    ).allow_loopback
    assert not EgressPolicy.from_settings(Settings()).allow_private


@pytest.mark.anyio
async def test_a_delivery_connects_to_the_checked_address_with_the_original_host() -> None:
    target = await OPEN.target("http://localhost:8123/hook?x=1")
    assert target.url.host in ("127.0.0.1", "::1")
    assert target.url.port == 8123 and target.url.path == "/hook"
    assert target.headers == {"host": "localhost:8123"}


@pytest.mark.anyio
async def test_https_keeps_the_name_for_tls() -> None:
    target = await OPEN.target("https://[::1]/hook")
    assert target.extensions == {"sni_hostname": "::1"}


@pytest.mark.anyio
async def test_a_name_that_resolves_to_a_refused_address_is_refused() -> None:
    with pytest.raises(EgressRefused, match="refused by policy: localhost is a loopback address"):
        await STRICT.target("http://localhost:8123/hook")
    with pytest.raises(EgressRefused, match="refused by policy"):
        await OPEN.target("http://169.254.169.254/latest/meta-data/")
