"""The agent's Revenue panel: price, account balance, shares, holders, income, claims."""
