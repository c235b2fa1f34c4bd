// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {Checkpoints} from "@openzeppelin/contracts/utils/structs/Checkpoints.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

/// @title Revenue shares of one Anima agent (ERC-7641: an ERC-20 with intrinsic revenue sharing)
/// @notice A fixed supply, minted once to the issuer, of tokens that share the agent's income.
/// The agent's payment contract sends the shares' part of each payment here (plain `receive`).
/// Anyone may take a `snapshot`: the native coin received since the last one is split into a
/// claimable part (`claimableBps`), which holders claim per snapshot in proportion to their
/// balance at that snapshot, and a redeemable part that backs the tokens: burning tokens pays
/// their share of it (snapshotted or not).
/// @dev The contract never asks who holds the agent's NFT: a transfer of the agent moves
/// control of the agent (and of its own account), never these holders' claims. Income is
/// counted from the balance, not in `receive`, so a payer that forwards little gas, and coin
/// forced in without a call, still count. Balances per snapshot are checkpoints keyed by the
/// number of snapshots taken before the change (OpenZeppelin 5 dropped ERC20Snapshot).
/// Rounding is always down, so the sums paid out never exceed what was received: the dust
/// stays in the contract.
contract AgentShares is ERC20, ReentrancyGuard {
    using Checkpoints for Checkpoints.Trace208;

    uint16 public constant MAX_BPS = 10_000;

    /// @notice The AgentNFT contract and the agent's token id these shares belong to.
    address public immutable agentNft;
    uint256 public immutable agentTokenId;
    /// @notice The part of the agent's income that flows here, in basis points (set at issue,
    /// recorded for readers; the payment contract applies it).
    uint16 public immutable revenueShareBps;
    /// @notice The part of each snapshot's new revenue that holders claim; the rest backs burns.
    uint16 public immutable claimableBps;
    /// @notice Who the whole supply was minted to.
    address public immutable issuer;

    uint48 private _snapshots; // snapshots taken so far; snapshot ids are 1.._snapshots
    mapping(address account => Checkpoints.Trace208) private _balanceCheckpoints;
    Checkpoints.Trace208 private _supplyCheckpoints;
    mapping(uint256 snapshotId => uint256) private _claimableAt;
    mapping(uint256 snapshotId => uint256) private _receivedAt;
    mapping(uint256 snapshotId => mapping(address account => bool)) private _claimed;
    uint256 private _claimPool; // claimable at past snapshots and not claimed yet
    uint256 private _redeemPool; // the snapshotted part that backs burns
    uint256 private _redeemedFromNew; // paid to burners out of revenue not snapshotted yet
    uint256 public totalReceived; // everything counted in snapshots so far

    event Snapshot(uint256 indexed snapshotId, uint256 revenue, uint256 claimable);
    event Claimed(uint256 indexed snapshotId, address indexed account, uint256 amount);
    event Redeemed(address indexed account, uint256 burned, uint256 paid);

    error InvalidBps(uint256 bps);
    error NoSupply();
    error UnknownSnapshot(uint256 snapshotId);
    error AlreadyClaimed(uint256 snapshotId, address account);
    error NothingToClaim(uint256 snapshotId, address account);
    error NoNewRevenue();
    error PaymentFailed(address to, uint256 amount);

    constructor(
        string memory name_,
        string memory symbol_,
        uint256 supply,
        address issuer_,
        address agentNft_,
        uint256 agentTokenId_,
        uint16 revenueShareBps_,
        uint16 claimableBps_
    ) ERC20(name_, symbol_) {
        if (revenueShareBps_ > MAX_BPS) revert InvalidBps(revenueShareBps_);
        if (claimableBps_ > MAX_BPS) revert InvalidBps(claimableBps_);
        if (supply == 0) revert NoSupply();
        agentNft = agentNft_;
        agentTokenId = agentTokenId_;
        revenueShareBps = revenueShareBps_;
        claimableBps = claimableBps_;
        issuer = issuer_;
        _mint(issuer_, supply);
    }

    /// @notice Income arrives here (from the payment contract, or anyone).
    receive() external payable {}

    // ----- snapshots and claims ---------------------------------------------------------

    /// @notice The id of the latest snapshot (0: none yet).
    function currentSnapshotId() external view returns (uint256) {
        return _snapshots;
    }

    /// @notice Revenue received since the last snapshot, before any burn took its part.
    function pendingRevenue() public view returns (uint256) {
        return address(this).balance + _redeemedFromNew - _claimPool - _redeemPool;
    }

    /// @notice Record the revenue received since the last snapshot and every balance now.
    function snapshot() external returns (uint256 snapshotId) {
        uint256 revenue = pendingRevenue();
        if (revenue == 0) revert NoNewRevenue();
        uint256 claimable = (revenue * claimableBps) / MAX_BPS;
        snapshotId = ++_snapshots;
        _claimableAt[snapshotId] = claimable;
        _receivedAt[snapshotId] = revenue;
        _claimPool += claimable;
        // What burners already took from this revenue left the contract; the rest of the
        // redeemable part joins the pool.
        _redeemPool += revenue - claimable - _redeemedFromNew;
        _redeemedFromNew = 0;
        totalReceived += revenue;
        emit Snapshot(snapshotId, revenue, claimable);
    }

    /// @notice Revenue received in snapshot `snapshotId` and the part holders claim.
    function revenueAt(uint256 snapshotId) external view returns (uint256 received, uint256 claimable) {
        return (_receivedAt[snapshotId], _claimableAt[snapshotId]);
    }

    function balanceOfAt(address account, uint256 snapshotId) public view returns (uint256) {
        _checkSnapshot(snapshotId);
        return _balanceCheckpoints[account].upperLookup(SafeCast.toUint48(snapshotId - 1));
    }

    function totalSupplyAt(uint256 snapshotId) public view returns (uint256) {
        _checkSnapshot(snapshotId);
        return _supplyCheckpoints.upperLookup(SafeCast.toUint48(snapshotId - 1));
    }

    function hasClaimed(address account, uint256 snapshotId) external view returns (bool) {
        return _claimed[snapshotId][account];
    }

    /// @notice What `account` may claim from snapshot `snapshotId` (0 once claimed).
    function claimableRevenue(address account, uint256 snapshotId) public view returns (uint256) {
        if (_claimed[snapshotId][account]) return 0;
        uint256 supply = totalSupplyAt(snapshotId);
        if (supply == 0) return 0;
        return (balanceOfAt(account, snapshotId) * _claimableAt[snapshotId]) / supply;
    }

    /// @notice Pay the caller's share of snapshot `snapshotId`.
    function claim(uint256 snapshotId) public nonReentrant {
        _checkSnapshot(snapshotId);
        if (_claimed[snapshotId][msg.sender]) revert AlreadyClaimed(snapshotId, msg.sender);
        uint256 amount = claimableRevenue(msg.sender, snapshotId);
        if (amount == 0) revert NothingToClaim(snapshotId, msg.sender);
        _claimed[snapshotId][msg.sender] = true;
        _claimPool -= amount;
        emit Claimed(snapshotId, msg.sender, amount);
        _pay(msg.sender, amount);
    }

    // ----- burning ----------------------------------------------------------------------

    /// @notice What burning `amount` tokens would pay now.
    function redeemableOnBurn(uint256 amount) public view returns (uint256) {
        (uint256 fromPool, uint256 fromNew) = _redeemable(amount);
        return fromPool + fromNew;
    }

    /// @notice Burn `amount` of the caller's tokens for their share of the redeemable pool
    /// and of the redeemable part of revenue not snapshotted yet.
    function burn(uint256 amount) external nonReentrant {
        (uint256 fromPool, uint256 fromNew) = _redeemable(amount);
        _burn(msg.sender, amount);
        _redeemPool -= fromPool;
        _redeemedFromNew += fromNew;
        emit Redeemed(msg.sender, amount, fromPool + fromNew);
        if (fromPool + fromNew > 0) _pay(msg.sender, fromPool + fromNew);
    }

    function _redeemable(uint256 amount) private view returns (uint256 fromPool, uint256 fromNew) {
        uint256 supply = totalSupply();
        if (supply == 0) return (0, 0);
        uint256 revenue = pendingRevenue();
        uint256 newRedeemable = (revenue * (MAX_BPS - claimableBps)) / MAX_BPS - _redeemedFromNew;
        fromPool = (amount * _redeemPool) / supply;
        fromNew = (amount * newRedeemable) / supply;
    }

    // ----- internals --------------------------------------------------------------------

    function _checkSnapshot(uint256 snapshotId) private view {
        if (snapshotId == 0 || snapshotId > _snapshots) revert UnknownSnapshot(snapshotId);
    }

    function _pay(address to, uint256 amount) private {
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert PaymentFailed(to, amount);
    }

    /// @dev Every balance change (mint, transfer, burn) records the balances as they are after
    /// it, under the number of snapshots taken so far: snapshot N sees the last value recorded
    /// under a key below N.
    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        uint48 key = _snapshots;
        if (from != address(0)) {
            _balanceCheckpoints[from].push(key, SafeCast.toUint208(balanceOf(from)));
        }
        if (to != address(0)) {
            _balanceCheckpoints[to].push(key, SafeCast.toUint208(balanceOf(to)));
        }
        if (from == address(0) || to == address(0)) {
            _supplyCheckpoints.push(key, SafeCast.toUint208(totalSupply()));
        }
    }
}
