"""The sandbox's decisions: which protections a machine gets, each process's policy and
environment, and the seccomp program. No process is started here."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from coldbrew.errors import SandboxUnavailable
from coldbrew.runtime.sandbox import seccomp
from coldbrew.runtime.sandbox.enter import granted_paths
from coldbrew.runtime.sandbox.host import BoxSpec, Sandbox
from coldbrew.runtime.sandbox.policy import (
    LAYER_NAMES,
    UID_BASE,
    UID_SPAN,
    Capabilities,
    Policy,
    SandboxMode,
    account_uid,
)

ROOT = Capabilities(root=True, landlock_abi=7, userns=False, cgroups=True, seccomp=True)
USER = Capabilities(root=False, landlock_abi=7, userns=True, cgroups=False, seccomp=True)
BARE = Capabilities(root=False, landlock_abi=0, userns=False, cgroups=False, seccomp=False)


@pytest.mark.parametrize(
    ("caps", "off"),
    [
        pytest.param(ROOT, set(), id="root-everything"),
        pytest.param(
            USER,
            {"uid", "processes", "cpu-share", "kill-all"},
            id="unprivileged",
        ),
        pytest.param(
            BARE,
            {
                "uid",
                "filesystem",
                "network",
                "unix-sockets",
                "processes",
                "cpu-share",
                "kill-all",
                "scratch-size",
            },
            id="old-kernel",
        ),
    ],
)
def test_the_report_names_every_protection_and_why_it_is_off(
    caps: Capabilities, off: set[str]
) -> None:
    layers = caps.layers(SandboxMode.STANDARD)
    assert [layer.name for layer in layers] == list(LAYER_NAMES)
    assert {layer.name for layer in layers if not layer.on} == off
    for layer in layers:
        assert layer.detail
        assert layer.line().startswith(f"sandbox: {layer.name}: {'on' if layer.on else 'OFF'}")


def test_off_turns_every_protection_off_and_says_so() -> None:
    layers = ROOT.layers(SandboxMode.OFF)
    assert not any(layer.on for layer in layers)
    assert all("--sandbox off" in layer.detail for layer in layers)


def test_strict_refuses_a_machine_without_every_layer(tmp_path: Path) -> None:
    with pytest.raises(SandboxUnavailable, match="uid is unavailable") as info:
        Sandbox(SandboxMode.STRICT, tmp_path, caps=USER)
    assert "--sandbox standard" in info.value.hint


def test_account_uids_are_stable_distinct_and_unprivileged() -> None:
    uids = {account_uid(f"account-{i}") for i in range(200)}
    assert len(uids) == 200
    assert all(UID_BASE <= uid < UID_BASE + UID_SPAN for uid in uids)
    assert account_uid("alice") == account_uid("alice")


def test_a_policy_crosses_the_exec_unchanged() -> None:
    policy = Policy(
        workdir="/w",
        scratch="/s",
        home="/h",
        uid=1_600_000_001,
        netns=True,
        devices=("/dev/nvidia0",),
        rlimits={"NOFILE": 64},
        cgroup_procs=("/sys/fs/cgroup/pids/x/cgroup.procs",),
    )
    assert Policy.from_env(policy.to_env()) == policy


def test_the_environment_is_clean_and_carries_the_endpoints_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "server-only")
    monkeypatch.setenv("COLDBREW_HOME", str(tmp_path))
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    sandbox = Sandbox(SandboxMode.STANDARD, tmp_path / "home", caps=USER)
    box = sandbox.box(BoxSpec("w-1", "acct", tmp_path / "artifact", 512))
    try:
        env = box.env({"COLDBREW_WORKER_ID": "w-1"}, {"HF_TOKEN": "tenant-secret"})
        assert box.policy is not None
        assert env["HF_TOKEN"] == "tenant-secret"
        assert env["HOME"] == env["TMPDIR"] == box.policy.scratch
        assert env["OMP_NUM_THREADS"] == "3"
        assert "AWS_SECRET_ACCESS_KEY" not in env and "COLDBREW_HOME" not in env
        assert set(env) <= {
            "PATH",
            "PYTHONPATH",
            "LANG",
            "LC_ALL",
            "LC_CTYPE",
            "TZ",
            "OMP_NUM_THREADS",
            "HOME",
            "TMPDIR",
            "HF_TOKEN",
            "COLDBREW_WORKER_ID",
            "COLDBREW_SANDBOX_POLICY",
        }
        # unprivileged: no cgroups, so memory and scratch are bounded by rlimits
        assert box.policy.rlimits["DATA"] == 512 << 20
        assert box.policy.userns and box.policy.netns and box.policy.uid is None
    finally:
        box.close()
    assert not (sandbox.root / "w-1").exists()


def test_egress_opt_in_keeps_the_network_and_unix_sockets(tmp_path: Path) -> None:
    sandbox = Sandbox(SandboxMode.STANDARD, tmp_path / "home", caps=USER)
    box = sandbox.box(BoxSpec("w-2", "acct", tmp_path, 512, network=True))
    try:
        assert box.policy is not None
        assert not box.policy.netns and not box.policy.deny_tcp and not box.policy.deny_unix
    finally:
        box.close()


def test_off_passes_the_servers_environment_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOMETHING", "x")
    box = Sandbox(SandboxMode.OFF, tmp_path).box(BoxSpec("w", "acct", tmp_path, 512))
    env = box.env({"COLDBREW_WORKER_ID": "w"}, {"TOKEN": "t"})
    assert env["SOMETHING"] == "x" and env["TOKEN"] == "t" and "COLDBREW_SANDBOX_POLICY" not in env


def test_no_granted_path_contains_the_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkout on sys.path that holds `.coldbrew` must not open the home to tenant code."""
    checkout = tmp_path / "repo"
    home = checkout / ".coldbrew"
    home.mkdir(parents=True)
    monkeypatch.setattr(sys, "path", [str(checkout), *sys.path])
    policy = Policy(workdir=str(tmp_path / "art"), scratch=str(tmp_path / "s"), home=str(home))
    granted = [path for path, _ in granted_paths(policy)]
    real_home = os.path.realpath(home)
    assert not [p for p in granted if real_home == p or real_home.startswith(p.rstrip("/") + "/")]
    assert os.path.realpath(sys.base_prefix) in granted


@pytest.mark.skipif(not seccomp.available(), reason="seccomp numbers for this machine")
@pytest.mark.parametrize("deny_unix", [True, False])
def test_the_seccomp_program_assembles_with_jumps_in_range(deny_unix: bool) -> None:
    code = seccomp._assemble(seccomp.program(deny_unix))
    for pc, (op, jt, jf, _) in enumerate(code):
        if op in (0x15, 0x35, 0x45):  # jumps land on an instruction
            assert pc + 1 + jt < len(code) and pc + 1 + jf < len(code)
    returns = [k for op, _, _, k in code if op == 0x06]
    assert 0x7FFF0000 in returns and (0x00050000 | 1) in returns
