"""The ``Chain`` seam: where Anima's contract lives, behind one Protocol.

Three implementations, picked by ``ANIMA_CHAIN`` in ``factory.py``: an anvil node the app starts
and stops itself (the default: a real node, state kept in the data directory), eth-tester
in-process (fast unit tests, memory only), and any JSON-RPC chain (Sepolia, Base, a local L2).
Everything above this seam (the contract client, jobs, the follower, the owner check) talks to
a ``web3.Web3`` and never asks which one runs.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from web3 import Web3


@runtime_checkable
class Chain(Protocol):
    kind: str  # shown to people ("anvil", "eth-tester", "rpc"); callers never branch on it

    @property
    def chain_id(self) -> int | None:
        """The chain's id when it is known without asking the node (a managed node is started
        with it), else ``None``."""
        ...

    @property
    def web3(self) -> Web3:
        """A connected Web3 (after ``start``)."""
        ...

    @property
    def rpc_url(self) -> str | None:
        """The node's JSON-RPC URL (``None`` for an in-process chain)."""
        ...

    @property
    def is_dev(self) -> bool:
        """A development chain: accounts can be funded for free and contracts auto-deployed."""
        ...

    def start(self) -> None:
        """Connect (and, for a managed node, start it); idempotent."""
        ...

    def stop(self) -> None:
        """Disconnect (and stop a managed node, which saves its state); idempotent."""
        ...

    def is_up(self) -> bool:
        """Whether the node answers right now (a cheap call, no exception)."""
        ...

    def restart_if_stopped(self) -> bool:
        """Start a managed node again if it stopped (its state is kept); True if it did.
        A node the app does not run is left alone (False)."""
        ...

    def fund(self, address: str, wei: int) -> None:
        """Give ``address`` at least ``wei`` (development chains only)."""
        ...
