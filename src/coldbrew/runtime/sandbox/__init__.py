"""The sandbox around every process that runs tenant code: policy, what the kernel allows, and
how a process applies it to itself (see docs/architecture.md, "Tenant code runs in a sandbox")."""

from coldbrew.runtime.sandbox.policy import POLICY_ENV, Capabilities, Layer, Policy, SandboxMode

__all__ = ["POLICY_ENV", "Capabilities", "Layer", "Policy", "SandboxMode"]
