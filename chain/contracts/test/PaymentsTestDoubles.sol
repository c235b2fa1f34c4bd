// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

interface IPaymentsLike {
    function deposit() external payable;
    function depositToken(address token, uint256 amount) external;
    function withdraw(address token, uint256 amount) external;
}

/// @notice Test double: a share contract that records what it received (a plain payable
/// receive, like the revenue-share token).
contract TestShareReceiver {
    uint256 public received;

    receive() external payable {
        received += msg.value;
    }
}

/// @notice Test double: a recipient that tries to withdraw again from inside the payment.
contract ReentrantReceiver {
    IPaymentsLike public immutable payments;
    bool public reentered;

    constructor(IPaymentsLike payments_) {
        payments = payments_;
    }

    function depositFor() external payable {
        payments.deposit{value: msg.value}();
    }

    function withdrawAll(uint256 amount) external {
        payments.withdraw(address(0), amount);
    }

    receive() external payable {
        // Reenter: must fail (the guard), and the failure must not let anything out twice.
        payments.withdraw(address(0), msg.value);
        reentered = true;
    }
}

/// @notice Test double: an ERC-20 that reenters the payments contract from `transferFrom`
/// and `transfer`, and can be told to fail transfers by returning false.
contract MaliciousToken is ERC20 {
    IPaymentsLike public payments;
    bool public reenter;
    bool public refuse;

    constructor() ERC20("Evil", "EVIL") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function arm(IPaymentsLike payments_, bool reenter_, bool refuse_) external {
        payments = payments_;
        reenter = reenter_;
        refuse = refuse_;
    }

    function transfer(address to, uint256 amount) public override returns (bool) {
        if (refuse) return false;
        if (reenter) payments.withdraw(address(this), amount);
        return super.transfer(to, amount);
    }

    function transferFrom(address from, address to, uint256 amount) public override returns (bool) {
        if (refuse) return false;
        if (reenter) payments.depositToken(address(this), amount);
        return super.transferFrom(from, to, amount);
    }
}
