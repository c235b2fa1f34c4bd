"""The on-chain section's layout: the status card, Mint (a job with a progress bar), Sign.

Signing a card update needs the wallet, so that button runs JavaScript: it fetches the EIP-712
message from the API, asks the wallet to sign it (``eth_signTypedData_v4``) and posts the
signature back for the platform to relay. Everything else goes through ``handlers.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
from gradio.events import Dependency

from ui.context import StudioContext
from ui.jobs.widget import job_widget
from ui.panels.chain import handlers
from ui.wiring import runner, wire

SIGN_ANCHOR_JS = """
async (agentId) => {
  const eth = window.ethereum;
  if (!agentId) return "Pick an agent first.";
  if (!eth) return "Signing needs a browser wallet; a local wallet signs card updates by itself.";
  try {
    const base = "/api/agents/" + agentId + "/chain/anchor";
    const req = await (await fetch(base, {credentials: "same-origin"})).json();
    if (req.error) return req.error.message;
    if (req.already_anchored) return "The served card is already anchored on chain.";
    const [address] = await eth.request({method: "eth_requestAccounts"});
    const signature = await eth.request({method: "eth_signTypedData_v4",
      params: [address, JSON.stringify(req.typed_data)]});
    const r = await fetch(base, {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({card_hash: req.card_hash, version: req.version,
                            deadline: req.deadline, signature})});
    const data = await r.json();
    if (!r.ok) return "Refused: " + data.error.message;
    return "Signed: the card update is being relayed (job " + data.id.slice(0, 8) + ").";
  } catch (e) {
    return "Signing failed: " + (e.message || e);
  }
}
"""


@dataclass
class ChainPanel:
    """``follow(event, picker)`` refreshes the section after an event that changed the agent."""

    status: gr.HTML
    outputs: dict[str, Any]
    ctx: StudioContext

    def follow(self, event: Dependency, picker: gr.Dropdown) -> None:
        refresh = runner(handlers.refresh, self.ctx.services, list(self.outputs))
        event.then(refresh, inputs=[picker], outputs=list(self.outputs.values()))


def build_chain_panel(ctx: StudioContext, picker: gr.Dropdown) -> ChainPanel:
    """Lay out the section inside the caller's layout; it follows the selected agent.

    Signing runs in the browser, which cannot read server-side state such as
    ``ctx.selected_agent``: it reads the agent id from the editor's ``picker``.
    """
    with gr.Column(elem_id="agent-chain"):
        status = gr.HTML(handlers.render_status(None), elem_id="agent-chain-status")
        with gr.Row():
            mint = gr.Button("Mint to my wallet", size="sm", elem_id="agent-mint")
            sign = gr.Button("Sign card update", size="sm", elem_id="agent-anchor")
            again = gr.Button("Refresh", size="sm", elem_id="agent-chain-refresh")
        progress = job_widget(ctx.services, elem_id="agent-mint-job")
        message = gr.Markdown("", elem_id="agent-chain-message")

    services, agent = ctx.services, ctx.selected_agent
    outputs = {"status": status, "job": progress.job_id}
    for trigger in (agent.change, again.click, progress.finished.change):
        wire(trigger, handlers.refresh, services, inputs=[agent], outputs=outputs)
    minted = wire(
        mint.click,
        handlers.start_mint,
        services,
        inputs=[agent],
        outputs={"job": progress.job_id, "message": message},
        as_user=True,
    )
    wire(minted.then, handlers.refresh, services, inputs=[agent], outputs=outputs)
    sign.click(None, inputs=[picker], outputs=[message], js=SIGN_ANCHOR_JS)
    return ChainPanel(status=status, outputs=outputs, ctx=ctx)
