"""The editor's on-chain identity section: token, owner, card hash match, Mint and Sign."""
