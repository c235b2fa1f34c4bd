// A standard client that knows nothing of Anima: ethers v6 with a hand-written ERC-721 +
// ERC-2981 ABI. Reads a token (and, given a holder's key, transfers it with safeTransferFrom)
// and prints JSON. Used by tests/chain/test_anvil.py to prove the contract is plain ERC-721/2981.
//
// node ethers_client.mjs RPC_URL CONTRACT TOKEN_ID OWNER [HOLDER_KEY RECIPIENT]
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.resolve(here, "../../chain/package.json"));
const { ethers } = require("ethers");

const [rpc, address, tokenId, owner, holderKey, recipient] = process.argv.slice(2);
const abi = [
  "function name() view returns (string)",
  "function symbol() view returns (string)",
  "function balanceOf(address owner) view returns (uint256)",
  "function ownerOf(uint256 tokenId) view returns (address)",
  "function tokenURI(uint256 tokenId) view returns (string)",
  "function royaltyInfo(uint256 tokenId, uint256 salePrice) view returns (address, uint256)",
  "function supportsInterface(bytes4 interfaceId) view returns (bool)",
  "function safeTransferFrom(address from, address to, uint256 tokenId)",
];
const provider = new ethers.JsonRpcProvider(rpc, undefined, { staticNetwork: true });
const nft = new ethers.Contract(address, abi, provider);
const [receiver, royalty] = await nft.royaltyInfo(tokenId, 10000n);
const out = {
  name: await nft.name(),
  symbol: await nft.symbol(),
  balanceOfOwner: (await nft.balanceOf(owner)).toString(),
  ownerOf: await nft.ownerOf(tokenId),
  tokenURI: await nft.tokenURI(tokenId),
  royaltyReceiver: receiver,
  royaltyPer10000: royalty.toString(),
  erc165: await nft.supportsInterface("0x01ffc9a7"),
  erc721: await nft.supportsInterface("0x80ac58cd"),
  erc721Metadata: await nft.supportsInterface("0x5b5e139f"),
  erc2981: await nft.supportsInterface("0x2a55205a"),
};
if (holderKey) {
  const wallet = new ethers.Wallet(holderKey, provider);
  const tx = await nft.connect(wallet).safeTransferFrom(wallet.address, recipient, tokenId);
  const receipt = await tx.wait();
  out.transfer = { status: receipt.status, gasUsed: receipt.gasUsed.toString() };
  out.ownerAfter = await nft.ownerOf(tokenId);
}
provider.destroy();
console.log(JSON.stringify(out));
