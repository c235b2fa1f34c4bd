"""``python app.py chain deploy`` / ``python app.py chain info``: operator commands.

``deploy`` puts the ERC-6551 contracts and AgentNFT on the configured chain from the minter
account and records the addresses in ``<data_dir>/chain/deployment.json`` (on a public chain,
set ``ANIMA_CHAIN_CONTRACT`` to the printed address for every machine). ``info`` prints the
chain, contract and minter the app would use, starting a managed anvil if that is the chain.
"""

from __future__ import annotations

import argparse
import json

from core.settings import Settings


def main(argv: list[str], settings: Settings) -> int:
    parser = argparse.ArgumentParser(prog="python app.py chain")
    parser.add_argument("command", choices=["deploy", "info"])
    args = parser.parse_args(argv)

    from container import build_services

    services = build_services(settings)
    try:
        if args.command == "deploy":
            deployment = services.chain.deploy()
            print(deployment.to_json())
        else:
            services.chain.start(follow=False)
            print(json.dumps(services.chain.info().model_dump(), indent=2))
    finally:
        services.close()
    return 0
