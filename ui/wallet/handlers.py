"""The sign-in bar's handlers: who is signed in, and the local wallets to offer.

Signing in and out happens in the browser (see ``layout.py``); these only describe the session
that the request's cookie resolved to.
"""

from __future__ import annotations

import gradio as gr

from container import Services
from core.principal import Principal
from ui.wiring import Updates

NOT_SIGNED_IN = (
    "**Not signed in.** Agents you create are drafts that anyone using this app may "
    "edit. Sign in to own them: each one is minted to your wallet as an NFT."
)


def describe_session(services: Services, principal: Principal) -> str:
    if principal.address is None:
        return NOT_SIGNED_IN
    view = services.auth.session_view(principal=principal)
    kind = "local wallet" if view.wallet == "local" else "browser wallet"
    signer = (
        " · card updates are signed for you"
        if services.auth.has_local_signer(principal=principal)
        else ""
    )
    return f"**Signed in** as `{principal.address}` ({kind}){signer}"


def refresh(services: Services, *, principal: Principal) -> Updates:
    """On page load: the session, and the local wallets (the signed-in one picked)."""
    wallets = services.auth.wallets.addresses() if services.settings.auth.local_wallets else []
    current = principal.address
    value = current if current in wallets else (wallets[0] if wallets else None)
    return {
        "status": describe_session(services, principal),
        "choice": gr.update(choices=wallets, value=value),
    }
