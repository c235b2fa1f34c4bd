"""The Wallet screen (layout): the signed-in wallet's revenue shares and claims, and a place
for its prepaid balance, deposits and spend per agent (filled where payments run).

Claiming, depositing and withdrawing send transactions from the browser wallet (a claim pays
whoever sends it), with the same JavaScript as the agent's Revenue panel.
"""

from __future__ import annotations

import gradio as gr

from ui.context import StudioContext
from ui.panels.revenue.wallet_js import CLAIM_JS, DEPOSIT_JS, WITHDRAW_JS
from ui.wallet_screen import handlers
from ui.wiring import runner, wire


def build_wallet_screen(ctx: StudioContext) -> None:
    """Lay out the screen inside the caller's ``gr.Tab`` and wire its events."""
    status = gr.Markdown(handlers.SIGN_IN, elem_id="wallet-screen-status")
    gr.Markdown("### Revenue shares")
    holdings = gr.Dataframe(
        headers=handlers.HOLDING_COLUMNS,
        value=[],
        interactive=False,
        wrap=True,
        elem_id="wallet-holdings",
    )
    with gr.Row():
        pick = gr.Dropdown([], label="Agent", elem_id="wallet-claim-agent", scale=3)
        claim = gr.Button("Claim", variant="primary", elem_id="wallet-claim", scale=1)
        again = gr.Button("Refresh", elem_id="wallet-refresh", scale=1)
    message = gr.Markdown("", elem_id="wallet-claim-message")
    gr.Markdown("### Balance, deposits and spend")
    payments = gr.Markdown(handlers.NO_PAYMENTS, elem_id="wallet-payments")
    with gr.Row(equal_height=True):
        amount = gr.Number(
            value=0.01, minimum=0, label="Amount (ETH)", elem_id="wallet-amount", scale=2
        )
        deposit = gr.Button("Deposit from my wallet", elem_id="wallet-deposit", scale=1)
        withdraw = gr.Button("Withdraw", elem_id="wallet-withdraw", scale=1)
    moved = gr.Markdown("", elem_id="wallet-deposit-message")

    services = ctx.services
    outputs = {"status": status, "holdings": holdings, "pick": pick, "payments": payments}
    wire(again.click, handlers.refresh, services, outputs=outputs)
    claimed = claim.click(None, inputs=[pick], outputs=[message], js=CLAIM_JS)
    wire(claimed.then, handlers.refresh, services, outputs=outputs)
    for button, js in ((deposit, DEPOSIT_JS), (withdraw, WITHDRAW_JS)):
        sent = button.click(None, inputs=[amount], outputs=[moved], js=js)
        wire(sent.then, handlers.refresh, services, outputs=outputs)
    # Who is signed in is known only per request: every page load reads the holdings afresh.
    ctx.on_load(runner(handlers.refresh, services, list(outputs)), [], list(outputs.values()))
