"""``python app.py economy audit`` / ``python app.py economy settle``: operator commands.

``audit`` compares the usage records and charges with the batches settled on chain and prints
OK or each difference (exit code 1). ``settle`` batches every unsettled charge now and waits
for the batches to be mined.
"""

from __future__ import annotations

import argparse

from core.principal import SYSTEM
from core.settings import Settings


def main(argv: list[str], settings: Settings) -> int:
    parser = argparse.ArgumentParser(prog="python app.py economy")
    parser.add_argument("command", choices=["audit", "settle"])
    args = parser.parse_args(argv)

    from container import build_services
    from economy.audit import audit

    services = build_services(settings)
    try:
        services.chain.start(follow=False)
        if args.command == "settle":
            for batch_id in services.economy.settle_now():
                job = services.economy.settlement.jobs.store.by_key(f"economy.settle:{batch_id}:0")
                if job is not None:
                    services.jobs.wait(job.id, timeout=300, principal=SYSTEM)
                print(batch_id, services.economy.settlement.batch(batch_id).status)  # type: ignore[union-attr]
            return 0
        services.usage.flush()
        report = audit(services.db, services.economy.payments(), services.economy.owners())
        print(report.text())
        return 0 if report.ok else 1
    finally:
        services.close()
