"""Follows the contract's events so Anima's copy of each token (owner, card hash) stays current.

The owner check itself reads ``ownerOf`` from the chain on every edit; the follower is what
keeps lists, the agent page and the metadata route current, including after a transfer made
anywhere else (a marketplace, a wallet, ``cast``). It reads ``Transfer``, ``AgentMinted`` and
``CardUpdated`` logs from the last applied block to the head (minus ``confirmations``), in
chunks, and stores the new position only after the chunk's changes, so a crash never skips a
block range. A range applied twice ends the same: each event sets a value (the holder, the
card at its version), and an older card version never replaces a newer one.
"""

from __future__ import annotations

import logging
from typing import Any

from eth_utils import keccak

from chain.agent_rows import AgentRows
from chain.contract import ZERO_ADDRESS, AgentNFT
from chain.records import CursorRecord, utcnow
from core.db import Database

log = logging.getLogger(__name__)

CHUNK_BLOCKS = 2000
TRANSFER = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
MINTED = "0x" + keccak(text="AgentMinted(uint256,bytes32)").hex()
UPDATED = "0x" + keccak(text="CardUpdated(uint256,uint64,bytes32,address)").hex()


class EventFollower:
    def __init__(
        self, rows: AgentRows, nft: AgentNFT, db: Database, confirmations: int = 0
    ) -> None:
        self.rows = rows  # agent rows are written by their owner, the agents service
        self.db = db  # the follower's own position (CursorRecord)
        self.nft = nft
        self.confirmations = confirmations
        self.key = f"{nft.deployment.chain_id}:{nft.address.lower()}"[:100]

    def sync(self) -> int:
        """Apply every new event up to the head; returns how many changed a row."""
        w3 = self.nft.w3
        head = int(w3.eth.block_number) - self.confirmations
        cursor = self._cursor()
        applied = 0
        while cursor < head:
            upto = min(head, cursor + CHUNK_BLOCKS)
            logs = w3.eth.get_logs(
                {
                    "address": self.nft.contract.address,
                    "fromBlock": cursor + 1,
                    "toBlock": upto,
                    "topics": [[TRANSFER, MINTED, UPDATED]],
                }
            )
            for entry in logs:
                applied += self._apply(entry)
            with self.db.session() as s:
                row = s.get(CursorRecord, self.key)
                if row is None:
                    s.add(CursorRecord(key=self.key, block=upto, updated_at=utcnow()))
                else:
                    row.block, row.updated_at = upto, utcnow()
            cursor = upto
        return applied

    def _cursor(self) -> int:
        with self.db.session() as s:
            row = s.get(CursorRecord, self.key)
            return int(row.block) if row is not None else self.nft.deployment.block - 1

    def _apply(self, entry: Any) -> int:
        topic = "0x" + bytes(entry["topics"][0]).hex()
        events = self.nft.contract.events
        if topic == TRANSFER:
            args = events.Transfer().process_log(entry)["args"]
            minted_on = None
            if args["from"] == ZERO_ADDRESS:
                minted_on = (self.nft.address, self.nft.deployment.chain_id)
            return self.rows.set_token_owner(str(args["tokenId"]), args["to"], minted_on=minted_on)
        if topic == MINTED:
            args = events.AgentMinted().process_log(entry)["args"]
            return self.rows.set_token_card(
                str(args["tokenId"]), "0x" + bytes(args["cardHash"]).hex(), 0
            )
        if topic == UPDATED:
            args = events.CardUpdated().process_log(entry)["args"]
            return self.rows.set_token_card(
                str(args["tokenId"]), "0x" + bytes(args["cardHash"]).hex(), int(args["version"])
            )
        return 0
