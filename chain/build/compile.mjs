// Compiles Anima's contracts with solcjs (npm `solc`, pinned in package.json) and writes one
// JSON artifact per deployable contract (ABI + creation bytecode) into chain/artifacts/.
//
// Why solcjs: it installs from npm with no download at run time (py-solc-x and solc-select
// fetch native binaries and fail offline). Sources are named by their import paths, never by
// absolute paths, so the output (metadata hash included) is the same on every machine.
//
// Usage: node build/compile.mjs [--out DIR]   (run from chain/; `make contracts` does it)
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const solc = require("solc");

const chainDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const nodeModules = path.join(chainDir, "node_modules");
const args = process.argv.slice(2);
const outIndex = args.indexOf("--out");
const outDir = outIndex >= 0 ? path.resolve(args[outIndex + 1]) : path.join(chainDir, "artifacts");

// Source unit name -> the contract to emit from it. The ERC-6551 registry and account are the
// reference implementations from npm `erc6551`, deployed beside AgentNFT on dev chains.
const TARGETS = {
  "contracts/AgentNFT.sol": "AgentNFT",
  "erc6551/ERC6551Registry.sol": "ERC6551Registry",
  "erc6551/examples/simple/ERC6551Account.sol": "ERC6551Account",
  "contracts/AgentShares.sol": "AgentShares",
  "contracts/test/ReentrantShareholder.sol": "ReentrantShareholder",
  // Prepaid balances and batched settlement of priced agents; the stablecoin exists on dev
  // chains only, the test doubles only in the contract tests.
  "contracts/Payments.sol": "Payments",
  "contracts/TestStablecoin.sol": "TestStablecoin",
  "contracts/test/PaymentsTestDoubles.sol": ["TestShareReceiver", "ReentrantReceiver", "MaliciousToken"],
};

// Settings the gas figures in the README were measured with.
const SETTINGS = {
  evmVersion: "cancun", // OpenZeppelin 5 uses mcopy
  viaIR: true,
  optimizer: { enabled: true, runs: 200 },
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
};

function readSource(unit) {
  const local = path.join(chainDir, unit);
  if (unit.startsWith("contracts/") && fs.existsSync(local)) return fs.readFileSync(local, "utf8");
  const dep = path.join(nodeModules, unit);
  if (!path.resolve(dep).startsWith(nodeModules + path.sep)) throw new Error(`bad import ${unit}`);
  return fs.readFileSync(dep, "utf8");
}

function findImports(unit) {
  try {
    return { contents: readSource(unit) };
  } catch (err) {
    return { error: `not found: ${unit} (${err.message}); run npm ci in chain/` };
  }
}

const input = {
  language: "Solidity",
  sources: Object.fromEntries(Object.keys(TARGETS).map((u) => [u, { content: readSource(u) }])),
  settings: SETTINGS,
};
const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const e of output.errors || []) console.error(e.formattedMessage);
if (errors.length) process.exit(1);

fs.mkdirSync(outDir, { recursive: true });
for (const [unit, names] of Object.entries(TARGETS)) for (const name of [names].flat()) {
  const contract = output.contracts[unit][name];
  const artifact = {
    contractName: name,
    sourceName: unit,
    compiler: { name: "solc-js", version: solc.version(), settings: { ...SETTINGS, outputSelection: undefined } },
    abi: contract.abi,
    bytecode: "0x" + contract.evm.bytecode.object,
  };
  fs.writeFileSync(path.join(outDir, `${name}.json`), JSON.stringify(artifact, null, 2) + "\n");
  console.log(`${name}: ${contract.evm.bytecode.object.length / 2} bytes -> ${path.relative(process.cwd(), path.join(outDir, name + ".json"))}`);
}
