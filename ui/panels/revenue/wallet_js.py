"""JavaScript the Revenue panel and the Wallet screen run in the browser: the holder's own
wallet (an injected EIP-1193 provider such as MetaMask) sends snapshot and claim
transactions, because a claim pays whoever sends it and so cannot be relayed. The server
builds each transaction (and refuses, with a sentence, one that would revert); the page only
asks the wallet to send it and waits for the receipt."""

from __future__ import annotations

# Shared helpers: send one server-built transaction and wait until it is mined.
_SEND = """
  const eth = window.ethereum;
  const same = {credentials: "same-origin"};
  const send = async (from, tx) => {
    const hash = await eth.request({method: "eth_sendTransaction",
      params: [{from, to: tx.to, data: tx.data, value: tx.value || "0x0"}]});
    for (let i = 0; i < 240; i++) {
      const receipt = await eth.request({method: "eth_getTransactionReceipt",
        params: [hash]});
      if (receipt) {
        const ok = receipt.status === "0x1" || receipt.status === 1;
        if (!ok) throw new Error("the transaction reverted");
        return hash;
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    throw new Error("the transaction was not mined within two minutes");
  };
  const json = async (r) => {
    const d = await r.json();
    if (!r.ok) throw new Error(d.error ? d.error.message : r.statusText);
    return d;
  };
"""

SNAPSHOT_JS = (
    """
async (agentId) => {
  if (!agentId) return "Pick an agent first.";
  if (!window.ethereum) return "Taking a snapshot needs a browser wallet.";
"""
    + _SEND
    + """
  try {
    const url = "/api/agents/" + agentId + "/shares/snapshot";
    const tx = await json(await fetch(url, same));
    const [from] = await eth.request({method: "eth_requestAccounts"});
    await send(from, tx);
    return "Snapshot taken: holders can claim their part now.";
  } catch (e) {
    return "No snapshot: " + (e.message || e);
  }
}
"""
)

# Claims every snapshot the wallet has not claimed yet, one transaction each.
CLAIM_JS = (
    """
async (agentId) => {
  if (!agentId) return "Pick an agent first.";
  if (!window.ethereum) return "Claiming needs a browser wallet that holds the shares.";
"""
    + _SEND
    + """
  try {
    const [from] = await eth.request({method: "eth_requestAccounts"});
    const base = "/api/agents/" + agentId + "/shares";
    const rows = await json(await fetch(base + "/claimable?account=" + from, same));
    const open = rows.filter((r) => !r.claimed && BigInt(r.amount_wei) > 0n);
    if (!open.length) {
      return "Nothing to claim: this wallet has claimed every snapshot it held shares in.";
    }
    let total = 0n;
    for (const row of open) {
      const body = JSON.stringify({snapshot_id: row.snapshot_id});
      const tx = await json(await fetch(base + "/claim", {...same, method: "POST",
        headers: {"Content-Type": "application/json"}, body}));
      await send(from, tx);
      total += BigInt(row.amount_wei);
    }
    const plural = open.length > 1 ? "s" : "";
    const amount = Number(total) / 1e18;
    return `Claimed ${open.length} snapshot${plural}: ${amount} ETH sent to your wallet.`;
  } catch (e) {
    return "Not claimed: " + (e.message || e);
  }
}
"""
)

# Selectors of Payments.deposit() and Payments.withdraw(address,uint256).
_DEPOSIT = "0xd0e30db0"
_WITHDRAW = "0xf3fef3a3"

# Prepaid balance, in the native coin: the browser wallet sends the deposit itself.
DEPOSIT_JS = (
    """
async (eth_amount) => {
  if (!window.ethereum) return "Depositing needs a browser wallet.";
"""
    + _SEND
    + f"""
  try {{
    const wei = BigInt(Math.round(Number(eth_amount) * 1e9)) * 10n ** 9n;
    if (wei <= 0n) return "Enter how much to deposit, in ETH.";
    const info = await json(await fetch("/api/economy", same));
    const [from] = await eth.request({{method: "eth_requestAccounts"}});
    await send(from, {{to: info.contract, data: "{_DEPOSIT}", value: "0x" + wei.toString(16)}});
    return `Deposited ${{eth_amount}} ETH: API calls to priced agents draw on it.`;
  }} catch (e) {{
    return "Not deposited: " + (e.message || e);
  }}
}}
"""
)

# Withdraws what is available: replies in flight and unsettled charges stay covered.
WITHDRAW_JS = (
    """
async (eth_amount) => {
  if (!window.ethereum) return "Withdrawing needs a browser wallet.";
"""
    + _SEND
    + f"""
  try {{
    const wei = BigInt(Math.round(Number(eth_amount) * 1e9)) * 10n ** 9n;
    if (wei <= 0n) return "Enter how much to withdraw, in ETH.";
    const info = await json(await fetch("/api/economy", same));
    const mine = await json(await fetch("/api/economy/balance", same));
    if (wei > BigInt(mine.available)) {{
      const left = Number(BigInt(mine.available)) / 1e18;
      return `Not withdrawn: ${{left}} ETH is available (the rest covers replies in flight ` +
        "and charges not settled yet).";
    }}
    const [from] = await eth.request({{method: "eth_requestAccounts"}});
    const data = "{_WITHDRAW}" + "0".repeat(64) + wei.toString(16).padStart(64, "0");
    await send(from, {{to: info.contract, data, value: "0x0"}});
    return `Withdrew ${{eth_amount}} ETH to your wallet.`;
  }} catch (e) {{
    return "Not withdrawn: " + (e.message || e);
  }}
}}
"""
)

# The holder routes the shares' part of the agent's income to the share contract (once).
ROUTE_INCOME_JS = (
    """
async (agentId) => {
  if (!agentId) return "Pick an agent first.";
  if (!window.ethereum) return "Routing the income needs the browser wallet holding the agent.";
"""
    + _SEND
    + """
  try {
    const url = "/api/agents/" + agentId + "/shares/route-income";
    const tx = await json(await fetch(url, {...same, method: "POST"}));
    const [from] = await eth.request({method: "eth_requestAccounts"});
    await send(from, tx);
    return "Income routed: settlements from now on " + tx.description + ".";
  } catch (e) {
    return "Not routed: " + (e.message || e);
  }
}
"""
)
