// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/// @title PaymentEscrow
/// @notice Clients deposit; providers redeem client-signed cumulative vouchers (EIP-712 domain
///         `Glassbox` v1, verifying contract = this escrow) and are paid only the increase over
///         what they already redeemed, so a replayed or older voucher pays nothing. A client
///         withdraws unspent funds only after `withdrawalDelay`, during which providers can still
///         redeem: a withdrawal racing a redemption gets what is left.
contract PaymentEscrow is EIP712, ReentrancyGuard {
    using SafeERC20 for IERC20;

    bytes32 public constant VOUCHER_TYPEHASH = keccak256("Voucher(address client,address provider,uint256 amount)");

    struct Voucher {
        address client;
        address provider;
        uint256 amount;
    }

    struct Withdrawal {
        uint256 amount;
        uint64 unlocksAt;
    }

    IERC20 public immutable token;
    /// @notice Seconds between requesting a withdrawal and being able to complete it.
    uint64 public immutable withdrawalDelay;

    mapping(address client => uint256) public deposits;
    mapping(address client => mapping(address provider => uint256)) public redeemed;
    mapping(address client => Withdrawal) public withdrawals;

    event Deposited(address indexed client, uint256 amount, uint256 balance);
    event Redeemed(address indexed client, address indexed provider, uint256 paid, uint256 cumulative);
    event WithdrawalRequested(address indexed client, uint256 amount, uint64 unlocksAt);
    event Withdrawn(address indexed client, uint256 amount);

    error ZeroAmount();
    error ZeroAddress();
    error NotVoucherProvider(address caller, address provider);
    error InvalidVoucherSignature(address recovered, address client);
    error VoucherAlreadyRedeemed(uint256 amount, uint256 redeemed);
    error InsufficientDeposit(uint256 balance);
    error NoWithdrawalPending();
    error WithdrawalLocked(uint64 unlocksAt);

    constructor(IERC20 token_, uint64 withdrawalDelay_) EIP712("Glassbox", "1") {
        if (address(token_) == address(0)) revert ZeroAddress();
        token = token_;
        withdrawalDelay = withdrawalDelay_;
    }

    /// @notice Deposits `amount` (pulled; approve first) to the caller's balance.
    function deposit(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        uint256 balance = deposits[msg.sender] + amount;
        deposits[msg.sender] = balance;
        token.safeTransferFrom(msg.sender, address(this), amount);
        emit Deposited(msg.sender, amount, balance);
    }

    /// @notice Pays the voucher's provider (the caller) the increase over what it redeemed,
    ///         capped by the client's balance; the rest stays redeemable after a top-up.
    function redeem(Voucher calldata voucher, bytes calldata signature) external nonReentrant returns (uint256 paid) {
        if (msg.sender != voucher.provider) revert NotVoucherProvider(msg.sender, voucher.provider);
        address signer = ECDSA.recover(voucherDigest(voucher), signature);
        if (signer != voucher.client) revert InvalidVoucherSignature(signer, voucher.client);
        uint256 done = redeemed[voucher.client][voucher.provider];
        if (voucher.amount <= done) revert VoucherAlreadyRedeemed(voucher.amount, done);
        uint256 balance = deposits[voucher.client];
        if (balance == 0) revert InsufficientDeposit(0);
        paid = voucher.amount - done;
        if (paid > balance) paid = balance;
        deposits[voucher.client] = balance - paid;
        redeemed[voucher.client][voucher.provider] = done + paid;
        token.safeTransfer(voucher.provider, paid);
        emit Redeemed(voucher.client, voucher.provider, paid, done + paid);
    }

    /// @notice Starts (or replaces) a withdrawal of `amount`; the delay restarts.
    function requestWithdrawal(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        uint256 balance = deposits[msg.sender];
        if (amount > balance) revert InsufficientDeposit(balance);
        uint64 unlocksAt = uint64(block.timestamp) + withdrawalDelay;
        withdrawals[msg.sender] = Withdrawal(amount, unlocksAt);
        emit WithdrawalRequested(msg.sender, amount, unlocksAt);
    }

    /// @notice Completes the pending withdrawal: pays the requested amount or, if redemptions
    ///         took some meanwhile, what is left.
    function withdraw() external nonReentrant returns (uint256 amount) {
        Withdrawal memory w = withdrawals[msg.sender];
        if (w.amount == 0) revert NoWithdrawalPending();
        if (block.timestamp < w.unlocksAt) revert WithdrawalLocked(w.unlocksAt);
        uint256 balance = deposits[msg.sender];
        amount = w.amount < balance ? w.amount : balance;
        if (amount == 0) revert InsufficientDeposit(0);
        delete withdrawals[msg.sender];
        deposits[msg.sender] = balance - amount;
        token.safeTransfer(msg.sender, amount);
        emit Withdrawn(msg.sender, amount);
    }

    function voucherDigest(Voucher calldata voucher) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(VOUCHER_TYPEHASH, voucher.client, voucher.provider, voucher.amount)));
    }
}
