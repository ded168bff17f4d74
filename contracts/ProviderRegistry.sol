// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {DisputeManaged} from "./DisputeManaged.sol";
import {ModelRegistry} from "./ModelRegistry.sol";

/// @title ProviderRegistry
/// @notice Providers: staked ERC-20, an unbonding delay before stake leaves, an endpoint URL, a
///         signing key (which may differ from the staking account) and offers (model -> prices:
///         `price`, per inference for a tensor model and per output token for an LLM, and
///         `inputPrice`, per input (prompt) token, 0 for a tensor model). Lowering applies at
///         once; raising either price only after the notice period, both new prices together, so
///         a quote can't jump mid-use. Only the DisputeManager can slash; stake that is unbonding
///         is still slashable, so the unbonding delay must outlast the challenge window and a
///         dispute.
///         While a challenge against a provider is open, the DisputeManager holds a lock on it and
///         nothing (staked or unbonding) can be withdrawn, however long the dispute takes.
///
///         Runtime profiles: a provider serves, and as a committee member judges, under a few
///         runtime profiles (each the keccak256 of a canonical JSON, the `runtime` of receipts; one
///         per engine it runs: a tensor engine, a token engine), each one the owner admitted: one that the network's verifiers and committee
///         members run, so that every answer served under it can be re-executed and judged. A
///         receipt under a runtime never admitted is outside the protocol and slashable on sight
///         (DisputeManager.reportUnadmittedRuntime). The owner (governance: a multisig in a real
///         deployment) only admits profiles; it can't touch stake or offers.
contract ProviderRegistry is ReentrancyGuard, DisputeManaged, Ownable2Step {
    using SafeERC20 for IERC20;

    struct Provider {
        uint256 stake;
        uint256 unbonding;
        uint64 unbondingEnds;
        address signer;
        bool registered;
        bool paused;
        /// @dev Opted in to committee duty (`setVoter`): only voters are drawn onto committees,
        ///      so a provider that doesn't run a committee member is never penalised for silence.
        bool voter;
        /// @dev The admitted runtime profiles it serves and judges under (`setRuntimes`), at most
        ///      MAX_RUNTIMES: one per engine, so a node serving ONNX models and LLMs declares two.
        bytes32[] runtimes;
        string endpoint;
    }

    /// @dev `price` and `inputPrice` are the pair in force; after `removeOffer` they keep the
    ///      last pair that was in force (`listed` stays true), so re-adding the offer can't skip
    ///      the notice period. A pending pair (`pendingPrice`, `pendingInputPrice`) takes effect
    ///      as one at `pendingAt`. Three slots: the pair, the pending pair, then the rest.
    struct Offer {
        uint128 price;
        uint128 inputPrice;
        uint128 pendingPrice;
        uint128 pendingInputPrice;
        uint64 pendingAt;
        bool active;
        bool listed;
    }

    IERC20 public immutable token;
    ModelRegistry public immutable models;
    uint256 public immutable minStake;
    /// @notice Seconds between requesting an unstake and being able to withdraw it.
    uint64 public immutable unbondingDelay;
    /// @notice Seconds before a price increase (of either price of an offer) takes effect.
    uint64 public immutable priceNoticePeriod;
    /// @notice The most runtime profiles one provider declares: one per engine is a handful.
    uint256 public constant MAX_RUNTIMES = 8;

    mapping(address account => Provider) private _providers;
    mapping(address account => mapping(bytes32 model => Offer)) private _offers;
    /// @notice The provider each signing key belongs to; keys stay bound after rotation, so a
    ///         receipt signed with a retired key still binds its provider.
    mapping(address key => address provider) public providerOfSigner;
    address[] private _accounts;
    /// @dev The committee pool: exactly the accounts that opted in (`voter`) and keep at least
    ///      `minStake` staked, so the draw's cost grows with voting stake, not with every account
    ///      ever registered. `_voterSlot` is an account's index in `_voters` plus one (0: absent).
    address[] private _voters;
    mapping(address account => uint256) private _voterSlot;
    /// @notice Runtime profile hashes the owner admitted (never un-admitted: old receipts stay judgeable).
    mapping(bytes32 runtime => bool) public admittedRuntime;
    /// @notice Open challenges against each provider. While non-zero, `withdraw` reverts
    ///         `StakeLocked`: a provider can't pull its stake out from under a pending verdict.
    mapping(address provider => uint256 count) public openChallenges;

    event ProviderRegistered(address indexed provider, address indexed signer, string endpoint, uint256 stake);
    event StakeAdded(address indexed provider, uint256 amount, uint256 stake);
    event UnstakeRequested(address indexed provider, uint256 amount, uint256 unbonding, uint64 unbondingEnds);
    event Withdrawn(address indexed provider, uint256 amount);
    event EndpointChanged(address indexed provider, string endpoint);
    event SignerChanged(address indexed provider, address indexed signer);
    /// @notice `effectiveAt` (seconds) is now for a decrease or a new offer, later for an increase.
    event OfferSet(
        address indexed provider, bytes32 indexed model, uint256 price, uint256 inputPrice, uint64 effectiveAt
    );
    event OfferRemoved(address indexed provider, bytes32 indexed model);
    event Paused(address indexed provider);
    event Resumed(address indexed provider);
    event Slashed(address indexed provider, uint256 amount);
    event VoterSet(address indexed provider, bool voter);
    event RuntimeAdmitted(bytes32 indexed runtime, string profile);
    event RuntimesSet(address indexed provider, bytes32[] runtimes);

    error AlreadyRegistered(address provider);
    error NotRegistered(address provider);
    error StakeBelowMinimum(uint256 stake, uint256 minimum);
    error ZeroAmount();
    error EmptyEndpoint();
    error SignerTaken(address key, address provider);
    error InsufficientStake(uint256 requested, uint256 stake);
    error NothingToWithdraw();
    error UnbondingNotOver(uint64 unbondingEnds);
    error UnknownModel(bytes32 model);
    error ModelIsDeprecated(bytes32 model);
    error PriceTooHigh(uint256 price);
    error NoOffer(bytes32 model);
    error AlreadyPaused();
    error NotPaused();
    error StakeLocked(uint256 openChallenges);
    error RuntimeNotAdmitted(bytes32 runtime);
    error TooManyRuntimes(uint256 count, uint256 max);
    error DuplicateRuntime(bytes32 runtime);

    modifier onlyRegistered() {
        if (!_providers[msg.sender].registered) revert NotRegistered(msg.sender);
        _;
    }

    constructor(
        IERC20 token_,
        ModelRegistry models_,
        uint256 minStake_,
        uint64 unbondingDelay_,
        uint64 priceNoticePeriod_
    ) Ownable(msg.sender) {
        if (address(token_) == address(0) || address(models_) == address(0)) revert ZeroAddress();
        if (minStake_ == 0) revert ZeroAmount();
        token = token_;
        models = models_;
        minStake = minStake_;
        unbondingDelay = unbondingDelay_;
        priceNoticePeriod = priceNoticePeriod_;
    }

    // ---- stake ----

    /// @notice Registers the caller as a provider with `amount` stake (pulled; approve first).
    function register(string calldata endpoint, address signer, uint256 amount) external nonReentrant {
        Provider storage p = _providers[msg.sender];
        if (p.registered) revert AlreadyRegistered(msg.sender);
        if (bytes(endpoint).length == 0) revert EmptyEndpoint();
        if (amount < minStake) revert StakeBelowMinimum(amount, minStake);
        _bindSigner(signer);
        p.registered = true;
        p.signer = signer;
        p.endpoint = endpoint;
        p.stake = amount;
        _accounts.push(msg.sender);
        token.safeTransferFrom(msg.sender, address(this), amount);
        emit ProviderRegistered(msg.sender, signer, endpoint, amount);
    }

    function addStake(uint256 amount) external nonReentrant onlyRegistered {
        if (amount == 0) revert ZeroAmount();
        Provider storage p = _providers[msg.sender];
        uint256 stake = p.stake + amount;
        if (stake < minStake) revert StakeBelowMinimum(stake, minStake);
        p.stake = stake;
        _syncVoter(msg.sender);
        token.safeTransferFrom(msg.sender, address(this), amount);
        emit StakeAdded(msg.sender, amount, stake);
    }

    /// @notice Starts unbonding `amount`; what stays staked must be zero or at least the minimum.
    ///         Each request restarts the delay for everything unbonding.
    function requestUnstake(uint256 amount) external onlyRegistered {
        if (amount == 0) revert ZeroAmount();
        Provider storage p = _providers[msg.sender];
        if (amount > p.stake) revert InsufficientStake(amount, p.stake);
        uint256 rest = p.stake - amount;
        if (rest != 0 && rest < minStake) revert StakeBelowMinimum(rest, minStake);
        p.stake = rest;
        p.unbonding += amount;
        p.unbondingEnds = uint64(block.timestamp) + unbondingDelay;
        _syncVoter(msg.sender);
        emit UnstakeRequested(msg.sender, amount, p.unbonding, p.unbondingEnds);
    }

    /// @notice Withdraws everything unbonding once the delay is over and no challenge against
    ///         the caller is open.
    function withdraw() external nonReentrant onlyRegistered {
        Provider storage p = _providers[msg.sender];
        uint256 amount = p.unbonding;
        if (amount == 0) revert NothingToWithdraw();
        if (block.timestamp < p.unbondingEnds) revert UnbondingNotOver(p.unbondingEnds);
        uint256 open = openChallenges[msg.sender];
        if (open != 0) revert StakeLocked(open);
        p.unbonding = 0;
        token.safeTransfer(msg.sender, amount);
        emit Withdrawn(msg.sender, amount);
    }

    // ---- identity ----

    function setEndpoint(string calldata endpoint) external onlyRegistered {
        if (bytes(endpoint).length == 0) revert EmptyEndpoint();
        _providers[msg.sender].endpoint = endpoint;
        emit EndpointChanged(msg.sender, endpoint);
    }

    /// @notice Rotates the signing key. The old key stays bound to this provider.
    function setSigner(address signer) external onlyRegistered {
        _bindSigner(signer);
        _providers[msg.sender].signer = signer;
        emit SignerChanged(msg.sender, signer);
    }

    function _bindSigner(address key) private {
        if (key == address(0)) revert ZeroAddress();
        address owner = providerOfSigner[key];
        if (owner != address(0) && owner != msg.sender) revert SignerTaken(key, owner);
        providerOfSigner[key] = msg.sender;
    }

    /// @notice Opts in to (or out of) committee duty. A voter is drawn onto committees in
    ///         proportion to its stake and must re-execute, commit and reveal in time, or lose
    ///         `nonRevealPenalty`; opting out applies to committees drawn afterwards.
    function setVoter(bool voter) external onlyRegistered {
        _providers[msg.sender].voter = voter;
        _syncVoter(msg.sender);
        emit VoterSet(msg.sender, voter);
    }

    /// @dev Keeps `_voters` equal to {opted in and staked at least the minimum}: O(1) either way.
    function _syncVoter(address account) private {
        Provider storage p = _providers[account];
        bool eligible = p.voter && p.stake >= minStake;
        uint256 slot = _voterSlot[account];
        if (eligible && slot == 0) {
            _voters.push(account);
            _voterSlot[account] = _voters.length;
        } else if (!eligible && slot != 0) {
            address last = _voters[_voters.length - 1];
            _voters[slot - 1] = last;
            _voterSlot[last] = slot;
            _voters.pop();
            delete _voterSlot[account];
        }
    }

    // ---- runtime profiles ----

    /// @notice Admits a runtime profile (owner only): `profile` is its canonical JSON (RFC 8785),
    ///         whose keccak256 is the `runtime` receipts name. Admitting says the network runs it:
    ///         verifiers and committee members can re-execute answers served under it.
    function admitRuntime(string calldata profile) external onlyOwner returns (bytes32 runtime) {
        runtime = keccak256(bytes(profile));
        admittedRuntime[runtime] = true;
        emit RuntimeAdmitted(runtime, profile);
    }

    /// @notice Declares the admitted runtime profiles the caller serves under (and, as a voter,
    ///         judges under: committees are drawn among voters that serve the challenged
    ///         receipt's runtime), replacing the ones declared before. At most MAX_RUNTIMES, no
    ///         duplicates: the committee pool walks them for every voter.
    function setRuntimes(bytes32[] calldata runtimes) external onlyRegistered {
        if (runtimes.length > MAX_RUNTIMES) revert TooManyRuntimes(runtimes.length, MAX_RUNTIMES);
        for (uint256 i; i < runtimes.length; ++i) {
            if (!admittedRuntime[runtimes[i]]) revert RuntimeNotAdmitted(runtimes[i]);
            for (uint256 j; j < i; ++j) if (runtimes[j] == runtimes[i]) revert DuplicateRuntime(runtimes[i]);
        }
        _providers[msg.sender].runtimes = runtimes;
        emit RuntimesSet(msg.sender, runtimes);
    }

    /// @notice Whether `provider` declared `runtime` among the profiles it serves under.
    function servesRuntime(address provider, bytes32 runtime) public view returns (bool) {
        bytes32[] storage declared = _providers[provider].runtimes;
        for (uint256 i; i < declared.length; ++i) if (declared[i] == runtime) return true;
        return false;
    }

    // ---- offers ----

    /// @notice Offers `model` at `price` and `inputPrice` (token base units). For a tensor (ONNX)
    ///         model `price` is per inference and `inputPrice` is 0; for an LLM `price` is per
    ///         output token and `inputPrice` per input (prompt) token. A first offer, or a pair
    ///         where neither price rises, applies now. If either rises, the whole new pair waits
    ///         `priceNoticePeriod` (the pair in force stays until then): lowering one price can't
    ///         carry a raise of the other past the notice. An offer that was removed and is set
    ///         again is compared with the last pair in force before its removal: it comes back at
    ///         that pair, the new one pending if it raises either, so remove-then-re-add can't
    ///         skip the notice.
    function setOffer(bytes32 model, uint256 price, uint256 inputPrice) external onlyRegistered {
        if (!models.exists(model)) revert UnknownModel(model);
        if (models.isDeprecated(model)) revert ModelIsDeprecated(model);
        if (price > type(uint128).max) revert PriceTooHigh(price);
        if (inputPrice > type(uint128).max) revert PriceTooHigh(inputPrice);
        Offer storage o = _offers[msg.sender][model];
        _settle(o);
        o.active = true;
        if (!o.listed || (price <= o.price && inputPrice <= o.inputPrice)) {
            o.price = uint128(price);
            o.inputPrice = uint128(inputPrice);
            o.pendingPrice = 0;
            o.pendingInputPrice = 0;
            o.pendingAt = 0;
            o.listed = true;
            emit OfferSet(msg.sender, model, price, inputPrice, uint64(block.timestamp));
        } else {
            uint64 effectiveAt = uint64(block.timestamp) + priceNoticePeriod;
            o.pendingPrice = uint128(price);
            o.pendingInputPrice = uint128(inputPrice);
            o.pendingAt = effectiveAt;
            emit OfferSet(msg.sender, model, price, inputPrice, effectiveAt);
        }
    }

    /// @notice Withdraws the offer; a pending pair is dropped, the pair in force remembered.
    function removeOffer(bytes32 model) external onlyRegistered {
        Offer storage o = _offers[msg.sender][model];
        if (!o.active) revert NoOffer(model);
        _settle(o);
        o.active = false;
        o.pendingPrice = 0;
        o.pendingInputPrice = 0;
        o.pendingAt = 0;
        emit OfferRemoved(msg.sender, model);
    }

    function _settle(Offer storage o) private {
        if (o.pendingAt != 0 && block.timestamp >= o.pendingAt) {
            o.price = o.pendingPrice;
            o.inputPrice = o.pendingInputPrice;
            o.pendingPrice = 0;
            o.pendingInputPrice = 0;
            o.pendingAt = 0;
        }
    }

    /// @notice The pair in force now, and whether the offer exists (prices 0 when it does not).
    function priceOf(address provider, bytes32 model)
        external
        view
        returns (bool active, uint256 price, uint256 inputPrice)
    {
        Offer memory o = _offers[provider][model];
        if (!o.active) return (false, 0, 0);
        if (o.pendingAt != 0 && block.timestamp >= o.pendingAt) {
            return (true, o.pendingPrice, o.pendingInputPrice);
        }
        return (true, o.price, o.inputPrice);
    }

    /// @notice The stored offer: the pair in force when last written and the pending pair, if any
    ///         (`priceOf` applies a pending pair whose time has come).
    function getOffer(address provider, bytes32 model) external view returns (Offer memory) {
        return _offers[provider][model];
    }

    // ---- availability ----

    function pause() external onlyRegistered {
        Provider storage p = _providers[msg.sender];
        if (p.paused) revert AlreadyPaused();
        p.paused = true;
        emit Paused(msg.sender);
    }

    function resume() external onlyRegistered {
        Provider storage p = _providers[msg.sender];
        if (!p.paused) revert NotPaused();
        p.paused = false;
        emit Resumed(msg.sender);
    }

    // ---- slashing ----

    /// @notice Counts one more open challenge against `provider`, freezing withdrawals (DisputeManager only).
    function lockStake(address provider) external onlyDisputeManager {
        ++openChallenges[provider];
    }

    /// @notice Counts one challenge against `provider` as settled (DisputeManager only).
    function unlockStake(address provider) external onlyDisputeManager {
        --openChallenges[provider];
    }

    /// @notice Takes up to `amount` from the provider's stake, then from what is unbonding, and
    ///         sends it to the DisputeManager. Returns what was taken.
    function slash(address provider, uint256 amount) external nonReentrant onlyDisputeManager returns (uint256 taken) {
        Provider storage p = _providers[provider];
        uint256 fromStake = amount < p.stake ? amount : p.stake;
        p.stake -= fromStake;
        uint256 fromUnbonding = amount - fromStake;
        if (fromUnbonding > p.unbonding) fromUnbonding = p.unbonding;
        p.unbonding -= fromUnbonding;
        _syncVoter(provider);
        taken = fromStake + fromUnbonding;
        if (taken != 0) token.safeTransfer(msg.sender, taken);
        emit Slashed(provider, taken);
    }

    // ---- views ----

    function getProvider(address provider) external view returns (Provider memory) {
        return _providers[provider];
    }

    function isRegistered(address provider) external view returns (bool) {
        return _providers[provider].registered;
    }

    function providerCount() external view returns (uint256) {
        return _accounts.length;
    }

    function providerAt(uint256 index) external view returns (address) {
        return _accounts[index];
    }

    /// @notice How many accounts are in the committee pool (opted in, staked at least the minimum).
    function voterCount() external view returns (uint256) {
        return _voters.length;
    }

    /// @notice Whether `key` is (or was) a signing key of `provider`.
    function isSigner(address provider, address key) external view returns (bool) {
        return provider != address(0) && providerOfSigner[key] == provider;
    }

    /// @notice Registered, not paused, and staked at least the minimum.
    function isActive(address provider) public view returns (bool) {
        Provider storage p = _providers[provider];
        return p.registered && !p.paused && p.stake >= minStake;
    }

    /// @notice Voters other than `a` and `b` that are active and judge under `runtime`, with
    ///         their stakes: the committee pool for a receipt of that runtime.
    /// @dev Walks `_voters` only (opted in, staked at least the minimum): gas grows with the
    ///      number of voters, each of whom keeps `minStake` locked, so padding the pool costs stake.
    function eligibleVoters(address a, address b, bytes32 runtime)
        external
        view
        returns (address[] memory accounts, uint256[] memory stakes)
    {
        uint256 n = _voters.length;
        accounts = new address[](n);
        stakes = new uint256[](n);
        uint256 k;
        for (uint256 i; i < n; ++i) {
            address acc = _voters[i];
            Provider storage p = _providers[acc];
            if (acc == a || acc == b || p.paused || !servesRuntime(acc, runtime)) continue;
            accounts[k] = acc;
            stakes[k] = p.stake;
            ++k;
        }
        assembly ("memory-safe") {
            mstore(accounts, k)
            mstore(stakes, k)
        }
    }
}
