"""The agent page's on-chain section: token id, contract, owner, card version, whether the
served card matches the hash on chain, the agent's token-bound account and royalty; a Mint
button (a durable job with a progress bar) and, for browser wallets, "Sign card update".

Rendering is a pure function of ``ChainStatus`` (tests check it directly); the handlers only
call ``services.chain``. Signing a card update needs the wallet, so that button runs
JavaScript: it fetches the EIP-712 message from the API, asks the wallet to sign it
(``eth_signTypedData_v4``) and posts the signature back for the platform to relay.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import gradio as gr

from chain.service import ChainStatus
from container import Services
from core.errors import AnimaError
from ui.common import principal_of, show_error
from ui.jobs_widget import job_widget

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
    """``refresh(agent_id)`` fills ``outputs``; chain it after events that change the agent."""

    status: gr.HTML
    outputs: list[Any]
    refresh: Any


def _short(value: str | None, keep: int = 10) -> str:
    if not value:
        return "-"
    return value if len(value) <= 2 * keep else f"{value[:keep]}…{value[-6:]}"


def render_status(status: ChainStatus | None) -> str:
    """The section as HTML (a definition list; full values in ``title`` attributes)."""
    if status is None:
        return '<div class="anima-chain" data-minted="none">Pick or save an agent.</div>'
    if not status.minted:
        state = {
            "pending": "Minting…",
            "failed": "The last mint failed: try again.",
        }.get(status.mint_state or "", "Not minted: a draft that lives only in this app.")
        owner = f" Owner: <code>{html.escape(status.owner)}</code>." if status.owner else ""
        return (
            f'<div class="anima-chain" data-minted="false" data-state="{status.mint_state or ""}">'
            f"{html.escape(state)}{owner}</div>"
        )
    if status.matches is None:
        match = "nothing anchored yet"
    elif status.matches:
        match = "✓ matches the on-chain hash"
    else:
        match = "✗ differs from the on-chain hash (an update is waiting to be anchored)"
    source = (
        " (stored copy: the chain node is unreachable)" if status.owner_source == "cache" else ""
    )
    royalty = (
        f"{status.royalty_bps / 100:g} % to the token-bound account"
        if status.royalty_bps is not None
        else "-"
    )
    rows = [
        ("Token id", status.token_id, "chain-token-id"),
        ("Contract", status.contract, "chain-contract"),
        ("Owner", (status.owner or "-") + source, "chain-owner"),
        ("Card version", str(status.card_version), "chain-version"),
        ("Served card", match, "chain-match"),
        ("Token-bound account", status.token_bound_account, "chain-tba"),
        ("Royalty", royalty, "chain-royalty"),
    ]
    shortened = {"chain-token-id", "chain-contract", "chain-tba"}
    items = "".join(
        f'<dt>{html.escape(label)}</dt><dd id="{key}" title="{html.escape(value or "")}">'
        f"{html.escape(_short(value) if key in shortened else (value or '-'))}</dd>"
        for label, value, key in rows
    )
    matches = "true" if status.matches else "false"
    return (
        f'<div class="anima-chain" data-minted="true" data-matches="{matches}">'
        f'<dl style="word-break: break-all">{items}</dl></div>'
    )


def build_chain_panel(services: Services, picker: gr.Dropdown) -> ChainPanel:
    """Lay out the section inside the caller's layout; it follows ``picker``."""
    with gr.Accordion("On-chain identity", open=True, elem_id="agent-chain"):
        status = gr.HTML(render_status(None), elem_id="agent-chain-status")
        with gr.Row():
            mint = gr.Button("Mint to my wallet", size="sm", elem_id="agent-mint")
            sign = gr.Button("Sign card update", size="sm", elem_id="agent-anchor")
            again = gr.Button("Refresh", size="sm", elem_id="agent-chain-refresh")
        progress = job_widget(services, elem_id="agent-mint-job")
        message = gr.Markdown("", elem_id="agent-chain-message")

    def refresh(agent_id: str | None) -> tuple[str, Any]:
        """The section, and a running mint's job id for the progress bar to follow."""
        if not agent_id:
            return render_status(None), gr.skip()
        try:
            current = services.chain.status(agent_id)
        except AnimaError as exc:
            error = f'<div class="anima-chain" data-minted="error">{html.escape(exc.message)}</div>'
            return error, gr.skip()
        job = current.mint_job or {}
        follow = job.get("id") if job.get("status") in ("queued", "running") else gr.skip()
        return render_status(current), follow

    def start_mint(agent_id: str | None, request: gr.Request) -> tuple[Any, str]:
        if not agent_id:
            return gr.skip(), show_error("pick an agent to mint")
        try:
            job = services.chain.request_mint(agent_id, principal=principal_of(services, request))
        except AnimaError as exc:
            return gr.skip(), show_error(exc)
        return job.id, "Minting: the token goes to your wallet."

    outputs = [status, progress.job_id]
    picker.change(refresh, inputs=[picker], outputs=outputs)
    again.click(refresh, inputs=[picker], outputs=outputs)
    mint.click(start_mint, inputs=[picker], outputs=[progress.job_id, message]).then(
        refresh, inputs=[picker], outputs=outputs
    )
    progress.finished.change(refresh, inputs=[picker], outputs=outputs)
    sign.click(None, inputs=[picker], outputs=[message], js=SIGN_ANCHOR_JS)
    return ChainPanel(status=status, outputs=outputs, refresh=refresh)
