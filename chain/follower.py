"""Follows the contract's events so Anima's copy of each token (owner, card hash) stays current.

The owner check itself reads ``ownerOf`` from the chain on every edit; the follower is what
keeps lists, the agent page and the metadata route current, including after a transfer made
anywhere else (a marketplace, a wallet, ``cast``). It reads ``Transfer``, ``AgentMinted`` and
``CardUpdated`` logs from the last applied block to the head (minus ``confirmations``), in
chunks, and stores the new position in the same transaction as the changes, so a crash never
skips or double-applies a block range.
"""

from __future__ import annotations

import logging

from eth_utils import keccak
from sqlalchemy import select

from chain.contract import ZERO_ADDRESS, AgentNFT
from chain.records import CursorRecord, utcnow
from core.db import Database

log = logging.getLogger(__name__)

CHUNK_BLOCKS = 2000
TRANSFER = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
MINTED = "0x" + keccak(text="AgentMinted(uint256,bytes32)").hex()
UPDATED = "0x" + keccak(text="CardUpdated(uint256,uint64,bytes32,address)").hex()


class EventFollower:
    def __init__(self, db: Database, nft: AgentNFT, confirmations: int = 0) -> None:
        self.db = db
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
            with self.db.session() as s:
                for entry in logs:
                    applied += self._apply(s, entry)
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

    def _apply(self, session: object, entry: object) -> int:
        from agents.records import AgentRecord

        topic = "0x" + bytes(entry["topics"][0]).hex()  # type: ignore[index]
        events = self.nft.contract.events
        if topic == TRANSFER:
            event = events.Transfer().process_log(entry)
            args = event["args"]
            values: dict[str, object] = {"owner_address": args["to"]}
            if args["from"] == ZERO_ADDRESS:
                values.update(
                    mint_state="minted",
                    token_contract=self.nft.address,
                    chain_id=self.nft.deployment.chain_id,
                )
            token_id = args["tokenId"]
        elif topic == MINTED:
            event = events.AgentMinted().process_log(entry)
            token_id = event["args"]["tokenId"]
            values = {"chain_card_hash": "0x" + bytes(event["args"]["cardHash"]).hex()}
            values["chain_card_version"] = 0
        elif topic == UPDATED:
            event = events.CardUpdated().process_log(entry)
            token_id = event["args"]["tokenId"]
            values = {
                "chain_card_hash": "0x" + bytes(event["args"]["cardHash"]).hex(),
                "chain_card_version": int(event["args"]["version"]),
            }
        else:
            return 0
        rows = session.scalars(  # type: ignore[attr-defined]
            select(AgentRecord).where(AgentRecord.token_id == str(token_id))
        ).all()
        for row in rows:
            version, held = values.get("chain_card_version"), row.chain_card_version
            if version is not None and held is not None and held > int(version):  # type: ignore[arg-type]
                continue  # an older event than what we already hold
            for name, value in values.items():
                setattr(row, name, value)
        return len(rows)
