"""The Revenue panel's layout: a summary, the holders table, the income plot, the owner's
issue form, and the Snapshot and Claim buttons that the browser wallet signs.

Snapshot, Claim and Route income run JavaScript (``wallet_js.py``) that reads the agent id from the
editor's ``picker`` (the browser cannot read server-side state) and then refreshes the panel.
"""

from __future__ import annotations

import gradio as gr

from ui.context import StudioContext
from ui.panels.revenue import handlers
from ui.panels.revenue.wallet_js import CLAIM_JS, ROUTE_INCOME_JS, SNAPSHOT_JS
from ui.wiring import wire


def build_revenue_panel(ctx: StudioContext, picker: gr.Dropdown) -> None:
    """Lay out the panel inside an ``Accordion`` of the caller's layout; it follows the
    selected agent."""
    with gr.Accordion("Revenue", open=False, elem_id="agent-revenue"):
        summary = gr.HTML(handlers.render_summary(None, None), elem_id="revenue-summary")
        mine = gr.Markdown("", elem_id="revenue-mine")
        with gr.Row():
            snapshot = gr.Button("Take snapshot", size="sm", elem_id="revenue-snapshot")
            claim = gr.Button("Claim my revenue", size="sm", elem_id="revenue-claim")
            route = gr.Button("Route income to shares", size="sm", elem_id="revenue-route")
            again = gr.Button("Refresh", size="sm", elem_id="revenue-refresh")
        message = gr.Markdown("", elem_id="revenue-message")
        income = gr.LinePlot(
            handlers.empty_income(),
            x="time",
            y="ETH",
            title="Income received by the shares",
            height=220,
            visible=False,
            elem_id="revenue-income",
        )
        holders = gr.Dataframe(
            headers=handlers.HOLDER_COLUMNS,
            value=[],
            interactive=False,
            wrap=True,
            label="Holders",
            visible=False,
            elem_id="revenue-holders",
        )
        with gr.Column(visible=False, elem_id="revenue-issue") as issue_box:
            gr.Markdown(
                "**Issue revenue shares** (once): the whole supply goes to your wallet; "
                "keep some and transfer the rest to backers. The revenue share cannot change."
            )
            with gr.Row():
                name = gr.Textbox(label="Name", elem_id="revenue-name", min_width=160)
                symbol = gr.Textbox(label="Symbol", elem_id="revenue-symbol", min_width=100)
                supply = gr.Number(
                    label="Supply", value=1000, precision=0, minimum=1, elem_id="revenue-supply"
                )
            with gr.Row():
                revenue_pct = gr.Number(
                    label="Revenue share (% of income)",
                    value=20,
                    minimum=0.01,
                    maximum=100,
                    elem_id="revenue-percent",
                )
                claimable_pct = gr.Number(
                    label="Claimable per snapshot (%)",
                    value=80,
                    minimum=0,
                    maximum=100,
                    info="The rest backs the shares: burning them pays it out.",
                    elem_id="revenue-claimable",
                )
            issue = gr.Button("Issue shares", variant="primary", elem_id="revenue-issue-button")

    services, agent = ctx.services, ctx.selected_agent
    outputs = {
        "summary": summary,
        "holders": holders,
        "income": income,
        "issue_box": issue_box,
        "mine": mine,
    }
    for trigger in (agent.change, again.click):
        wire(trigger, handlers.refresh, services, inputs=[agent], outputs=outputs)
    issued = wire(
        issue.click,
        handlers.issue,
        services,
        inputs=[agent, supply, name, symbol, revenue_pct, claimable_pct],
        outputs={"message": message},
    )
    wire(issued.then, handlers.refresh, services, inputs=[agent], outputs=outputs)
    for button, js in ((snapshot, SNAPSHOT_JS), (claim, CLAIM_JS), (route, ROUTE_INCOME_JS)):
        signed = button.click(None, inputs=[picker], outputs=[message], js=js)
        wire(signed.then, handlers.refresh, services, inputs=[agent], outputs=outputs)
