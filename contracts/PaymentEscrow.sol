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
///         out of the client's deposit into the channel's holds, and the provider receives it
///         `holdPeriod` later (at its next redemption, or by `release`). If the provider is
///         convicted (a challenge upheld: a wrong or withheld answer) before a hold ends, the
///         held money goes back to the client's deposit, and so does the first redemption of each
///         channel within a hold period after the conviction, since a cumulative voucher can't
///         tell which answers it paid for came before the conviction.
///
///         Each redemption waits its own hold: holds are a queue of buckets, one per slot of
///         `holdPeriod / 8`, released in order, so redeeming often never delays money already
///         held (a provider can redeem the moment a client asks to withdraw, and a busy channel
///         is still paid). A bucket releases at the end of its slot plus `holdPeriod`: every
///         amount waits at least `holdPeriod` and at most `holdPeriod` plus one slot, and a
///         channel has at most 10 buckets alive, which bounds every loop here.
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

    /// @dev The money of the redemptions in one slot, waiting out `holdPeriod`: `since` is the
    ///      first of them (a conviction at or after it refunds the bucket), `releaseAt` when it pays.
    struct Hold {
        uint128 amount;
        uint64 since;
        uint64 releaseAt;
    }

    IERC20 public immutable token;
    /// @notice Seconds between requesting a withdrawal and being able to complete it.
    uint64 public immutable withdrawalDelay;
    /// @notice Seconds a redemption is held before the provider receives it; must outlast the
    ///         challenge window and a dispute, or a cheater is paid before it is caught.
    uint64 public immutable holdPeriod;

    mapping(address client => uint256) public deposits;
    mapping(address client => mapping(address provider => uint256)) public redeemed;
    /// @dev Per channel, the buckets not yet paid or refunded are `_holds[c][p][_holdHead[c][p]:]`.
    mapping(address client => mapping(address provider => Hold[])) private _holds;
    mapping(address client => mapping(address provider => uint256)) private _holdHead;
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
    error AmountTooLarge(uint256 amount);

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
    ///         channel's current hold bucket, after settling the buckets that are due. After a
    ///         conviction the first redemption is refunded instead.
    function redeem(Voucher calldata voucher, bytes calldata signature) external nonReentrant returns (uint256 paid) {
        address client = voucher.client;
        address provider = voucher.provider;
        if (msg.sender != provider) revert NotVoucherProvider(msg.sender, provider);
        address signer = ECDSA.recover(voucherDigest(voucher), signature);
        if (signer != client) revert InvalidVoucherSignature(signer, client);
        uint256 done = redeemed[client][provider];
        if (voucher.amount <= done) revert VoucherAlreadyRedeemed(voucher.amount, done);
        _release(client, provider);
        uint256 balance = deposits[client];
        if (balance == 0) revert InsufficientDeposit(0);
        paid = voucher.amount - done;
        if (paid > balance) paid = balance;
        if (paid > type(uint128).max) revert AmountTooLarge(paid);
        redeemed[client][provider] = done + paid;
        // A cumulative voucher can't say which answers came before the conviction, so the first
        // redemption after one is refunded; once a hold period has passed since the conviction,
        // every earlier answer is past the challenge window too, and the channel is paid again.
        uint64 convicted = convictedAt[provider];
        bool forfeited = convicted > lastRedeemedAt[client][provider] && block.timestamp < convicted + holdPeriod;
        lastRedeemedAt[client][provider] = uint64(block.timestamp);
        emit Redeemed(client, provider, paid, done + paid, forfeited);
        if (forfeited) return 0;
        deposits[client] = balance - paid;
        _hold(client, provider, uint128(paid));
    }

    /// @dev Adds `amount` to the bucket of the current slot, opening it if it is not the newest.
    function _hold(address client, address provider, uint128 amount) private {
        uint64 slot = _slot();
        uint64 releaseAt = (uint64(block.timestamp) / slot + 1) * slot + holdPeriod;
        Hold[] storage queue = _holds[client][provider];
        uint256 n = queue.length;
        if (n > _holdHead[client][provider] && queue[n - 1].releaseAt == releaseAt) {
            queue[n - 1].amount += amount;
        } else {
            queue.push(Hold(amount, uint64(block.timestamp), releaseAt));
        }
    }

    function _slot() private view returns (uint64) {
        uint64 slot = holdPeriod / 8;
        return slot == 0 ? 1 : slot;
    }

    /// @notice Settles the channel's buckets that are due, oldest first: pays the provider those
    ///         whose hold is over, refunds the client those begun before a conviction of the
    ///         provider. Anyone may call.
    function release(address client, address provider) external nonReentrant {
        _release(client, provider);
    }

    function _release(address client, address provider) private {
        Hold[] storage queue = _holds[client][provider];
        uint256 head = _holdHead[client][provider];
        uint256 n = queue.length;
        uint64 convicted = convictedAt[provider];
        uint256 paid;
        uint256 refunded;
        // buckets are in slot order: those settled (paid once their hold ended, refunded when a
        // conviction came before it ended) come first
        for (; head < n; ++head) {
            Hold memory hold = queue[head];
            if (convicted >= hold.since && convicted < hold.releaseAt) refunded += hold.amount;
            else if (block.timestamp >= hold.releaseAt) paid += hold.amount;
            else break;
            delete queue[head];
        }
        _holdHead[client][provider] = head;
        if (refunded != 0) {
            deposits[client] += refunded;
            emit Refunded(client, provider, refunded);
        }
        if (paid != 0) {
            token.safeTransfer(provider, paid);
            emit Released(client, provider, paid);
        }
    }

    /// @notice What the channel holds now, and when its oldest bucket pays out (0: nothing held).
    function heldOf(address client, address provider) external view returns (uint256 amount, uint64 nextReleaseAt) {
        Hold[] storage queue = _holds[client][provider];
        uint256 n = queue.length;
        for (uint256 i = _holdHead[client][provider]; i < n; ++i) {
            if (nextReleaseAt == 0) nextReleaseAt = queue[i].releaseAt;
            amount += queue[i].amount;
        }
    }

    /// @notice The channel's buckets not yet paid or refunded, oldest first.
    function holdsOf(address client, address provider) external view returns (Hold[] memory buckets) {
        Hold[] storage queue = _holds[client][provider];
        uint256 head = _holdHead[client][provider];
        buckets = new Hold[](queue.length - head);
        for (uint256 i; i < buckets.length; ++i) buckets[i] = queue[head + i];
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
