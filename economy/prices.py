"""Prices of agents and what a request costs at a price.

A price is per 1,000 prompt tokens, per 1,000 completion tokens and per minute of speech, in
the chain's native coin ("native", amounts in wei) or an ERC-20 (its address, amounts in its
smallest unit). A request's cost is rounded up to the next unit once, over the whole request:
no request that used a priced agent is free, and no one pays more than one unit extra.
"""

from __future__ import annotations

from fractions import Fraction
from math import ceil

from eth_utils import is_address, to_checksum_address
from pydantic import BaseModel, Field, field_validator

from economy.records import NATIVE

MAX_AMOUNT = 2**255  # far above any real price; keeps sums inside a uint256


class Price(BaseModel):
    """An agent's price; all zero: free (the default)."""

    currency: str = Field(
        default=NATIVE,
        description="'native' (the chain's coin, amounts in wei) or an ERC-20 token address.",
    )
    prompt_per_1k: int = Field(default=0, ge=0, lt=MAX_AMOUNT)
    completion_per_1k: int = Field(default=0, ge=0, lt=MAX_AMOUNT)
    speech_per_minute: int = Field(default=0, ge=0, lt=MAX_AMOUNT)

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if value.lower() == NATIVE:
            return NATIVE
        if not is_address(value):
            raise ValueError("currency is 'native' or an ERC-20 token address (0x + 40 hex)")
        return to_checksum_address(value)

    @property
    def free(self) -> bool:
        return not (self.prompt_per_1k or self.completion_per_1k or self.speech_per_minute)

    def cost(self, prompt_tokens: int = 0, completion_tokens: int = 0, audio_s: float = 0) -> int:
        """What using this much costs, rounded up to the next smallest unit."""
        exact = (
            Fraction(prompt_tokens * self.prompt_per_1k, 1000)
            + Fraction(completion_tokens * self.completion_per_1k, 1000)
            + Fraction(self.speech_per_minute) * Fraction(audio_s) / 60
        )
        return ceil(exact)


class PriceView(Price):
    agent_id: str


FREE = Price()
