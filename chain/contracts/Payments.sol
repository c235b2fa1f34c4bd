// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IERC721} from "@openzeppelin/contracts/token/ERC721/IERC721.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

interface IAgentAccounts {
    function tokenAccount(uint256 tokenId) external view returns (address);
}

/// @title Prepaid balances for priced Anima agents, settled in batches
/// @notice Callers deposit the chain's native coin (token `address(0)`) or an ERC-20 and may
/// withdraw what is unspent at any time. The platform meters use off chain and settles it here
/// in batches: one `settle` per batch debits the callers and pays each agent's ERC-6551 account
/// (`AgentNFT.tokenAccount`), less the platform fee (basis points, fixed at deployment, rounded
/// down: the agent gets the remainder to the last wei) and less the revenue share the agent's
/// owner assigned to a share contract (native coin only).
/// @dev A batch id settles once: a retried or replayed `settle` reverts, so the settler can
/// resend a batch after a crash without charging anyone twice. A debit never takes a balance
/// below zero: what a payer withdrew before settlement is recorded as a `Shortfall` and not
/// paid out. A recipient that refuses a payment (reverts, or reenters) cannot block a batch:
/// its amount is credited to its balance here, to withdraw later.
contract Payments is ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    address public constant NATIVE = address(0);
    uint16 public constant MAX_BPS = 10_000;
    /// @notice Gas forwarded with a native payment: enough for an account or a share
    /// contract to record it, too little for a recipient to burn a batch's gas.
    uint256 public constant PUSH_GAS = 100_000;

    struct RevenueShare {
        address shares;
        uint16 bps;
    }

    IERC721 public immutable agents;
    address public immutable settler;
    address public immutable feeRecipient;
    uint16 public immutable feeBps;

    /// @notice Unspent balance per (wallet, token).
    mapping(address => mapping(address => uint256)) public balanceOf;
    /// @notice The block in which a batch settled (0: not settled).
    mapping(bytes32 => uint256) public settledAt;
    mapping(uint256 => RevenueShare) public revenueShareOf;

    event Deposited(address indexed payer, address indexed token, uint256 amount);
    event Withdrawn(address indexed payer, address indexed token, uint256 amount);
    event BatchSettled(bytes32 indexed batchId, uint256 lines);
    event Shortfall(bytes32 indexed batchId, address indexed payer, uint256 indexed agentId, address token, uint256 unpaid);
    event AgentPaid(
        uint256 indexed agentId, address indexed token, uint256 gross, uint256 fee, uint256 toShares, uint256 toAccount
    );
    event PaymentDeferred(address indexed to, address indexed token, uint256 amount);
    event RevenueShareSet(uint256 indexed agentId, address shares, uint16 bps);

    error NotSettler();
    error BatchAlreadySettled(bytes32 batchId);
    error LengthMismatch();
    error ZeroAmount();
    error InsufficientBalance(uint256 available, uint256 requested);
    error NotAgentOwner(uint256 agentId);
    error RevenueShareAlreadySet(uint256 agentId);
    error BadBps(uint256 bps);
    error BadAddress();
    error NativeTransferFailed();

    constructor(IERC721 agents_, address settler_, address feeRecipient_, uint16 feeBps_) {
        if (feeBps_ > MAX_BPS) revert BadBps(feeBps_);
        if (address(agents_) == address(0) || settler_ == address(0)) revert BadAddress();
        if (feeBps_ > 0 && feeRecipient_ == address(0)) revert BadAddress();
        agents = agents_;
        settler = settler_;
        feeRecipient = feeRecipient_;
        feeBps = feeBps_;
    }

    // ----- payers -------------------------------------------------------------------------

    /// @notice Add the native coin sent with the call to the sender's balance.
    function deposit() external payable nonReentrant {
        if (msg.value == 0) revert ZeroAmount();
        balanceOf[msg.sender][NATIVE] += msg.value;
        emit Deposited(msg.sender, NATIVE, msg.value);
    }

    /// @notice Pull `amount` of `token` (approved beforehand) into the sender's balance. What
    /// arrived is credited, so a token that takes a fee on transfer credits what it delivered.
    function depositToken(IERC20 token, uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        if (address(token) == NATIVE) revert BadAddress();
        uint256 before = token.balanceOf(address(this));
        token.safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = token.balanceOf(address(this)) - before;
        balanceOf[msg.sender][address(token)] += received;
        emit Deposited(msg.sender, address(token), received);
    }

    /// @notice Take `amount` of the sender's unspent `token` (`address(0)`: native) back.
    function withdraw(address token, uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        uint256 have = balanceOf[msg.sender][token];
        if (have < amount) revert InsufficientBalance(have, amount);
        balanceOf[msg.sender][token] = have - amount; // effects before the transfer
        emit Withdrawn(msg.sender, token, amount);
        if (token == NATIVE) {
            (bool ok,) = payable(msg.sender).call{value: amount}("");
            if (!ok) revert NativeTransferFailed();
        } else {
            IERC20(token).safeTransfer(msg.sender, amount);
        }
    }

    // ----- agents' owners -----------------------------------------------------------------

    /// @notice Send `bps`/10000 of the agent's native income, after the fee, to `shares` from
    /// now on. The agent NFT's current holder sets it once; it cannot change afterwards, so
    /// share holders can count on it.
    function setRevenueShare(uint256 agentId, address shares, uint16 bps) external {
        if (agents.ownerOf(agentId) != msg.sender) revert NotAgentOwner(agentId);
        if (revenueShareOf[agentId].shares != address(0)) revert RevenueShareAlreadySet(agentId);
        if (shares == address(0)) revert BadAddress();
        if (bps == 0 || bps > MAX_BPS) revert BadBps(bps);
        revenueShareOf[agentId] = RevenueShare(shares, bps);
        emit RevenueShareSet(agentId, shares, bps);
    }

    // ----- settlement ---------------------------------------------------------------------

    /// @notice Settle one batch of metered use: line i debits `amounts[i]` of `tokens[i]` from
    /// `payers[i]` for agent `agentIds[i]`. Lines sorted by (token, agent) pay each agent once.
    function settle(
        bytes32 batchId,
        address[] calldata payers,
        uint256[] calldata agentIds,
        address[] calldata tokens,
        uint256[] calldata amounts
    ) external nonReentrant {
        if (msg.sender != settler) revert NotSettler();
        if (settledAt[batchId] != 0) revert BatchAlreadySettled(batchId);
        uint256 n = payers.length;
        if (agentIds.length != n || tokens.length != n || amounts.length != n) revert LengthMismatch();
        settledAt[batchId] = block.number;
        emit BatchSettled(batchId, n);

        uint256 gross; // of the current (agent, token) run
        for (uint256 i = 0; i < n; ++i) {
            gross += _debit(batchId, payers[i], agentIds[i], tokens[i], amounts[i]);
            bool last = i + 1 == n || agentIds[i + 1] != agentIds[i] || tokens[i + 1] != tokens[i];
            if (last && gross > 0) {
                _pay(agentIds[i], tokens[i], gross);
                gross = 0;
            }
        }
    }

    function _debit(bytes32 batchId, address payer, uint256 agentId, address token, uint256 amount)
        private
        returns (uint256 taken)
    {
        uint256 have = balanceOf[payer][token];
        taken = amount <= have ? amount : have;
        if (taken < amount) emit Shortfall(batchId, payer, agentId, token, amount - taken);
        if (taken > 0) balanceOf[payer][token] = have - taken;
    }

    function _pay(uint256 agentId, address token, uint256 gross) private {
        uint256 fee = (gross * feeBps) / MAX_BPS; // rounded down: the remainder is the agent's
        uint256 net = gross - fee;
        if (fee > 0) balanceOf[feeRecipient][token] += fee;
        uint256 toShares;
        RevenueShare memory share = revenueShareOf[agentId];
        if (token == NATIVE && share.shares != address(0)) {
            toShares = (net * share.bps) / MAX_BPS;
        }
        uint256 toAccount = net - toShares;
        emit AgentPaid(agentId, token, gross, fee, toShares, toAccount);
        if (toShares > 0) _push(share.shares, token, toShares);
        if (toAccount > 0) _push(IAgentAccounts(address(agents)).tokenAccount(agentId), token, toAccount);
    }

    /// @dev Interactions come last in `settle`'s loop step, after every balance it changed; a
    /// payment the recipient refuses stays here as its balance.
    function _push(address to, address token, uint256 amount) private {
        bool ok;
        if (token == NATIVE) {
            (ok,) = payable(to).call{value: amount, gas: PUSH_GAS}("");
        } else {
            ok = IERC20(token).trySafeTransfer(to, amount);
        }
        if (!ok) {
            balanceOf[to][token] += amount;
            emit PaymentDeferred(to, token, amount);
        }
    }
}
