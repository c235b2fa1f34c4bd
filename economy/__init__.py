"""The agent economy: prices, prepaid balances and batched on-chain settlement.

An agent's owner prices its use through the API (``prices``); a caller's wallet holds a
prepaid balance in the ``Payments`` contract (``contract``); every request to a priced agent
first reserves its worst case against that balance (``ledger``), and its usage record becomes a
charge when it ends; a durable job settles charges on chain in batches (``settlement``,
``jobs``) and ``audit`` proves that the usage records and the chain agree.
"""
