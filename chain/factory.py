"""Picks the ``Chain`` implementation from settings (``ANIMA_CHAIN``); nothing else does."""

from __future__ import annotations

from chain.anvil_chain import DEFAULT_CHAIN_ID, AnvilChain
from chain.base import Chain
from chain.eth_tester_chain import EthTesterChain
from chain.rpc_chain import RpcChain
from core.errors import ValidationError
from core.settings import Settings


def make_chain(settings: Settings) -> Chain:
    match settings.chain.kind:
        case "anvil":
            return AnvilChain(
                state_file=settings.chain_dir / "anvil-state.json",
                chain_id=settings.chain.id or DEFAULT_CHAIN_ID,
                port=settings.chain.anvil_port,
                binary=settings.chain.anvil_bin,
            )
        case "eth-tester":
            return EthTesterChain()
        case "rpc":
            if not settings.chain.rpc_url:
                raise ValidationError("ANIMA_CHAIN=rpc needs ANIMA_CHAIN_RPC_URL")
            return RpcChain(settings.chain.rpc_url)
    raise ValidationError(f"unknown ANIMA_CHAIN {settings.chain.kind!r}")
