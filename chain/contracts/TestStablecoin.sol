// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title A dollar-like ERC-20 for development chains
/// @notice Deployed beside `Payments` on anvil and eth-tester so agents can be priced in an
/// ERC-20. Six decimals like USDC; anyone may mint on a test chain (`faucet`), never deploy it
/// on a chain with real value.
contract TestStablecoin is ERC20 {
    constructor() ERC20("Anima Test Dollar", "tUSD") {}

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    function faucet(address to, uint256 amount) external {
        _mint(to, amount);
    }
}
