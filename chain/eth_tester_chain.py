"""An in-process chain (eth-tester + py-evm) for fast unit tests.

It runs the same bytecode as a real node but keeps everything in memory: it is gone when the
process ends, so it never stores users' data. Blocks are mined on every transaction.
"""

from __future__ import annotations

from web3 import EthereumTesterProvider, Web3


class EthTesterChain:
    kind = "eth-tester"
    is_dev = True
    rpc_url = None
    chain_id = None  # eth-tester's own; read from the node once it runs

    def __init__(self) -> None:
        self._w3: Web3 | None = None

    @property
    def web3(self) -> Web3:
        if self._w3 is None:
            self.start()
        assert self._w3 is not None
        return self._w3

    def start(self) -> None:
        if self._w3 is None:
            self._w3 = Web3(EthereumTesterProvider())

    def stop(self) -> None:
        """Nothing to stop; the chain lives as long as this object."""

    def is_up(self) -> bool:
        return self._w3 is not None

    def restart_if_stopped(self) -> bool:
        """In-process: it stops only with this object."""
        return False

    def fund(self, address: str, wei: int) -> None:
        w3 = self.web3
        have = w3.eth.get_balance(address)
        if have >= wei:
            return
        tx = w3.eth.send_transaction(
            {"from": w3.eth.accounts[0], "to": address, "value": wei - have}
        )
        w3.eth.wait_for_transaction_receipt(tx)
