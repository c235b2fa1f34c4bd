"""What a request costs at a price: rounded up once per request, speech per minute."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from economy.prices import Price


def test_cost_is_rounded_up_once_per_request() -> None:
    price = Price(prompt_per_1k=1000, completion_per_1k=3000, speech_per_minute=60)
    assert price.cost(40, 10) == 70
    assert price.cost(1, 0) == 1  # 1 wei exactly
    assert Price(prompt_per_1k=1).cost(1, 0) == 1  # a thousandth of a wei rounds up to one
    assert Price(prompt_per_1k=1).cost(1000, 0) == 1
    assert Price(prompt_per_1k=1).cost(1001, 0) == 2
    assert price.cost(audio_s=30) == 30
    assert price.cost(40, 10, 0.5) == 71  # 70 + half a wei, once
    assert Price().free and Price().cost(10**6, 10**6, 600) == 0


def test_currency_is_native_or_an_address() -> None:
    assert Price(currency="NATIVE").currency == "native"
    token = Price(currency="0x" + "ab" * 20).currency
    assert token == "0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB"
    with pytest.raises(ValidationError):
        Price(currency="dollars")
    with pytest.raises(ValidationError):
        Price(prompt_per_1k=-1)
