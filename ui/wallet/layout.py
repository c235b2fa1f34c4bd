"""The studio's sign-in bar (layout): a browser wallet (MetaMask or any injected EIP-1193
provider), or a local wallet kept encrypted on this machine for people without one.

Signing in sets an HttpOnly cookie, which only an HTTP response can do, so the buttons run a
few lines of JavaScript that call the same ``/api/auth`` routes any client uses (nonce, sign,
verify) and then reload the page; the Python side only shows who is signed in. No key ever
reaches the page: a browser wallet signs inside the wallet, a local wallet on the server.
"""

from __future__ import annotations

import gradio as gr

from ui.context import StudioContext
from ui.wallet import handlers
from ui.wiring import runner

# Shared by the buttons: POST JSON, return the body or raise with the API's own message.
_POST = """
const post = async (url, body) => {
  const r = await fetch(url, {method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify(body || {})});
  const data = r.status === 204 ? {} : await r.json();
  if (!r.ok) throw new Error((data.error && data.error.message) || r.statusText);
  return data;
};
"""

BROWSER_SIGN_IN_JS = (
    """
async () => {
"""
    + _POST
    + """
  const eth = window.ethereum;
  if (!eth) return "No browser wallet found. Install one (MetaMask...) or use a local wallet.";
  try {
    const [address] = await eth.request({method: "eth_requestAccounts"});
    const nonce = await post("/api/auth/nonce", {address});
    const hex = "0x" + Array.from(new TextEncoder().encode(nonce.message))
      .map((b) => b.toString(16).padStart(2, "0")).join("");
    const signature = await eth.request({method: "personal_sign", params: [hex, address]});
    await post("/api/auth/verify", {message: nonce.message, signature});
    window.location.reload();
    return "Signed in as " + address;
  } catch (e) {
    return "Sign-in failed: " + (e.message || e);
  }
}
"""
)

LOCAL_CREATE_JS = (
    """
async (password) => {
"""
    + _POST
    + """
  try {
    const me = await post("/api/auth/local-wallets", {password});
    window.location.reload();
    return "Created and signed in as " + me.address;
  } catch (e) {
    return "Could not create the wallet: " + (e.message || e);
  }
}
"""
)

LOCAL_UNLOCK_JS = (
    """
async (password, address) => {
"""
    + _POST
    + """
  if (!address) return "Pick a local wallet first (or create one).";
  try {
    await post("/api/auth/local-wallets/" + address + "/login", {password});
    window.location.reload();
    return "Signed in as " + address;
  } catch (e) {
    return "Could not unlock: " + (e.message || e);
  }
}
"""
)

SIGN_OUT_JS = (
    """
async () => {
"""
    + _POST
    + """
  try { await post("/api/auth/logout"); } catch (e) { return "Sign-out failed: " + e.message; }
  window.location.reload();
  return "Signed out";
}
"""
)


def build_wallet_bar(ctx: StudioContext) -> None:
    """Lay out the bar inside the caller's layout and wire its events."""
    with gr.Row(equal_height=True):
        status = gr.Markdown(handlers.NOT_SIGNED_IN, elem_id="wallet-status")
        browser = gr.Button("Sign in with browser wallet", size="sm", elem_id="wallet-browser")
        sign_out = gr.Button("Sign out", size="sm", elem_id="wallet-signout")
    with gr.Accordion("No browser wallet? Use a local wallet", open=False, elem_id="wallet-local"):
        gr.Markdown(
            "A key created here and stored encrypted with your password in the data folder. "
            "It works offline; keep the password: without it the wallet cannot be opened."
        )
        with gr.Row():
            password = gr.Textbox(label="Password", type="password", elem_id="wallet-password")
            choice = gr.Dropdown(
                choices=[], label="Local wallet", elem_id="wallet-local-select", scale=2
            )
        with gr.Row():
            create = gr.Button("Create local wallet", size="sm", elem_id="wallet-create")
            unlock = gr.Button("Unlock and sign in", size="sm", elem_id="wallet-unlock")
    message = gr.Markdown("", elem_id="wallet-message")

    browser.click(None, outputs=[message], js=BROWSER_SIGN_IN_JS)
    sign_out.click(None, outputs=[message], js=SIGN_OUT_JS)
    create.click(None, inputs=[password], outputs=[message], js=LOCAL_CREATE_JS)
    unlock.click(None, inputs=[password, choice], outputs=[message], js=LOCAL_UNLOCK_JS)
    # Who is signed in is known only per request: the page load fills the bar.
    names = ["status", "choice"]
    refresh = runner(handlers.refresh, ctx.services, names, as_user=True)
    ctx.on_load(refresh, outputs=[status, choice])
