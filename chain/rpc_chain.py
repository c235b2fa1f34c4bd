"""Any JSON-RPC chain by URL: Sepolia, Base, a local L2, or an anvil someone else runs.

Nothing is started or funded here: the minter account must hold gas money, and the contract
is deployed once with ``python app.py chain deploy`` (or ``ANIMA_CHAIN_AUTO_DEPLOY=true``).
"""

from __future__ import annotations

from web3 import Web3

from core.errors import ChainError


class RpcChain:
    kind = "rpc"
    is_dev = False
    chain_id = None  # whatever the node says; ANIMA_CHAIN_ID only checks it

    def __init__(self, url: str, timeout_s: float = 20.0) -> None:
        self.rpc_url = url
        self._w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout_s}))

    @property
    def web3(self) -> Web3:
        return self._w3

    def start(self) -> None:
        """Nothing to start: the node is someone else's."""

    def stop(self) -> None:
        """Nothing to stop."""

    def is_up(self) -> bool:
        try:
            return self._w3.is_connected()
        except Exception:
            return False

    def restart_if_stopped(self) -> bool:
        """The node is someone else's to restart."""
        return False

    def fund(self, address: str, wei: int) -> None:
        raise ChainError(f"cannot fund {address} on a public chain: send it gas money yourself")
