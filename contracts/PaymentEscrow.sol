// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {DisputeManaged} from "./DisputeManaged.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/// @title PaymentEscrow
/// @notice Clients deposit; providers redeem client-signed cumulative vouchers (EIP-712 domain
///         `Glassbox` v1, verifying contract = this escrow) and are paid only the increase over
///         what they already redeemed, so a replayed or older voucher pays nothing. A client
///         withdraws unspent funds only after `withdrawalDelay`, during which providers can still
///         redeem: a withdrawal racing a redemption gets what is left.
///
///         Payment is held, so clients don't pay for wrong answers: a redemption moves the money
///         out of the client's deposit into the channel's hold, and the provider receives it
///         `holdPeriod` later (at its next redemption, or by `release`). If the provider is
///         convicted (a challenge upheld: a wrong or withheld answer) before the hold ends, the
///         held money goes back to the client's deposit, and so does the first redemption of each
///         channel after the conviction, since a cumulative voucher can't tell which answers it
///         paid for came before the conviction. A channel holds one sum: redeeming while a hold
///         runs adds to it and restarts it, so a provider is paid steadily by redeeming at most
///         once per hold period.
contract PaymentEscrow is EIP712, ReentrancyGuard, DisputeManaged {
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

    /// @dev The money of one redemption, waiting out `holdPeriod`.
    struct Hold {
        uint256 amount;
        uint64 since;
    }

    IERC20 public immutable token;
    /// @notice Seconds between requesting a withdrawal and being able to complete it.
    uint64 public immutable withdrawalDelay;
    /// @notice Seconds a redemption is held before the provider receives it; must outlast the
    ///         challenge window and a dispute, or a cheater is paid before it is caught.
    uint64 public immutable holdPeriod;

    mapping(address client => uint256) public deposits;
    mapping(address client => mapping(address provider => uint256)) public redeemed;
    mapping(address client => mapping(address provider => Hold)) public holds;
    /// @notice When each channel last redeemed: a conviction after it voids the next redemption.
    mapping(address client => mapping(address provider => uint64)) public lastRedeemedAt;
    /// @notice The time of the provider's latest conviction (zero: never convicted).
    mapping(address provider => uint64) public convictedAt;
    mapping(address client => Withdrawal) public withdrawals;

    event Deposited(address indexed client, uint256 amount, uint256 balance);
    /// @notice `paid` went into the hold, or straight back to the client when `refunded`.
    event Redeemed(address indexed client, address indexed provider, uint256 paid, uint256 cumulative, bool refunded);
    event WithdrawalRequested(address indexed client, uint256 amount, uint64 unlocksAt);
    event Withdrawn(address indexed client, uint256 amount);
    event Released(address indexed client, address indexed provider, uint256 amount);
    event Refunded(address indexed client, address indexed provider, uint256 amount);
    event Convicted(address indexed provider, uint64 timestamp);

    error ZeroAmount();
    error NotVoucherProvider(address caller, address provider);
    error InvalidVoucherSignature(address recovered, address client);
    error VoucherAlreadyRedeemed(uint256 amount, uint256 redeemed);
    error InsufficientDeposit(uint256 balance);
    error NoWithdrawalPending();
    error WithdrawalLocked(uint64 unlocksAt);

    constructor(IERC20 token_, uint64 withdrawalDelay_, uint64 holdPeriod_) EIP712("Glassbox", "1") {
        if (address(token_) == address(0)) revert ZeroAddress();
        token = token_;
        withdrawalDelay = withdrawalDelay_;
        holdPeriod = holdPeriod_;
    }

    /// @notice Records that `provider` was caught (DisputeManager only): what it holds is refunded.
    function convict(address provider) external onlyDisputeManager {
        convictedAt[provider] = uint64(block.timestamp);
        emit Convicted(provider, uint64(block.timestamp));
    }

    /// @notice Deposits `amount` (pulled; approve first) to the caller's balance.
    function deposit(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        uint256 balance = deposits[msg.sender] + amount;
        deposits[msg.sender] = balance;
        token.safeTransferFrom(msg.sender, address(this), amount);
        emit Deposited(msg.sender, amount, balance);
    }

    /// @notice Takes the increase over what the voucher's provider (the caller) redeemed, capped
    ///         by the client's balance (the rest stays redeemable after a top-up), into the
    ///         channel's hold, after releasing a finished hold; an unfinished one is added to and
    ///         restarts. After a conviction the first redemption is refunded instead.
    function redeem(Voucher calldata voucher, bytes calldata signature) external nonReentrant returns (uint256 paid) {
        address client = voucher.client;
        address provider = voucher.provider;
        if (msg.sender != provider) revert NotVoucherProvider(msg.sender, provider);
        address signer = ECDSA.recover(voucherDigest(voucher), signature);
        if (signer != client) revert InvalidVoucherSignature(signer, client);
        uint256 done = redeemed[client][provider];
        if (voucher.amount <= done) revert VoucherAlreadyRedeemed(voucher.amount, done);
        _release(client, provider);
        Hold storage hold = holds[client][provider];
        uint256 balance = deposits[client];
        if (balance == 0) revert InsufficientDeposit(0);
        paid = voucher.amount - done;
        if (paid > balance) paid = balance;
        redeemed[client][provider] = done + paid;
        bool forfeited = convictedAt[provider] > lastRedeemedAt[client][provider];
        lastRedeemedAt[client][provider] = uint64(block.timestamp);
        emit Redeemed(client, provider, paid, done + paid, forfeited);
        if (forfeited) return 0;
        deposits[client] = balance - paid;
        hold.amount += paid;
        hold.since = uint64(block.timestamp);
    }

    /// @notice Settles the channel's hold: pays the provider once `holdPeriod` is over, or refunds
    ///         the client at once if the provider was convicted since the hold began. Anyone may call.
    function release(address client, address provider) external nonReentrant {
        _release(client, provider);
    }

    function _release(address client, address provider) private {
        Hold memory hold = holds[client][provider];
        if (hold.amount == 0) return;
        if (convictedAt[provider] >= hold.since) {
            delete holds[client][provider];
            deposits[client] += hold.amount;
            emit Refunded(client, provider, hold.amount);
        } else if (block.timestamp >= hold.since + holdPeriod) {
            delete holds[client][provider];
            token.safeTransfer(provider, hold.amount);
            emit Released(client, provider, hold.amount);
        }
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
