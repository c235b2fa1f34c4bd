// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AgentShares} from "../AgentShares.sol";

/// @title A shareholder that tries to be paid twice (tests only)
/// @notice When a payout arrives it calls back into the shares contract (claim or burn again)
/// and records whether that second call went through; the tests expect it never does.
contract ReentrantShareholder {
    AgentShares public immutable shares;
    uint256 private _mode; // 1: claim again on payment, 2: burn again on payment
    uint256 private _snapshotId;
    uint256 public payments;
    uint256 public reentered;
    uint256 public refused;

    constructor(AgentShares shares_) {
        shares = shares_;
    }

    function claim(uint256 snapshotId) external {
        _mode = 1;
        _snapshotId = snapshotId;
        shares.claim(snapshotId);
    }

    function burn(uint256 amount) external {
        _mode = 2;
        shares.burn(amount);
    }

    receive() external payable {
        payments += 1;
        uint256 mode = _mode;
        _mode = 0;
        if (mode == 1) {
            try shares.claim(_snapshotId) {
                reentered += 1;
            } catch {
                refused += 1;
            }
        } else if (mode == 2) {
            try shares.burn(1) {
                reentered += 1;
            } catch {
                refused += 1;
            }
        }
    }
}
