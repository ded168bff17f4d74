// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {Hashes} from "@openzeppelin/contracts/utils/cryptography/Hashes.sol";
import {ReceiptLib} from "./ReceiptLib.sol";
import {ReceiptLedger} from "./ReceiptLedger.sol";
import {ProviderRegistry} from "./ProviderRegistry.sol";
import {ModelRegistry} from "./ModelRegistry.sol";
import {PaymentEscrow} from "./PaymentEscrow.sol";

/// @title DisputeManager
/// @notice Four ways a provider loses stake:
///  (a) equivocation: two receipts it signed for the same model, inputHash, paramsHash and
///      runtime with different outputHash, on a model whose policy is exact. Proven by the
///      receipts alone; slashed at once, the reporter rewarded.
///  (b) a receipt under a runtime profile the ProviderRegistry never admitted: nobody is known to
///      run it, so nobody could check the answer. Proven by the receipt alone; slashed at once,
///      once per receipt.
///  (c) a challenge: anyone posts `challengeBond` and a receipt (signed, or proven included in a
///      batch the provider committed) claiming it is wrong, with a URI for its inputs. The pool of
///      voters that judge under the receipt's runtime is frozen then; one block later anyone calls
///      `drawCommittee`: up to `committeeSize` of that pool are drawn by stake from the hash of
///      the block after the opening, which did not exist when the challenger chose to open, and
///      which nobody can answer by reshaping the pool (nothing the challenger chooses enters the
///      seed). Members re-execute and vote guilty/innocent by commit-reveal. A verdict needs
///      an absolute majority of the committee: a guilty provider loses `slashBps` of its stake,
///      an innocent one receives part of the bond; the winner gets `rewardBps` of what the loser
///      lost, the treasury the rest. Anything else (a split, too few reveals, no committee) voids
///      the challenge and refunds the bond. Members who don't reveal, or reveal against the
///      verdict, lose `votePenalty`, which goes to the members who voted with it: abstaining or
///      voting blindly costs, judging pays. A receipt stays challengeable until a challenge of it
///      is upheld (one open at a time). Every stage has a deadline and anyone may resolve after
///      the last one. When both executions were traced, the challenger names the first step at
///      which they part (`openTracedChallenge`), proven against the receipt's traceRoot and its
///      own, so members need only re-run up to it.
///  (d) unavailability: within `challengeWindow` of a batch's commit, anyone posts the bond and
///      names a receipt hash in it (`challengeAvailability`); the provider must publish that
///      receipt, its inputs and its outputs on chain within `answerPeriod`, or be slashed as in
///      (c): in one transaction (`answerAvailability`) when each is at most one chunk, else chunk
///      by chunk (`answerAvailabilityChunk`, one transaction per 64 KiB chunk, each proven against
///      the receipt's data commitment). Each receipt (and each batch) can be challenged so once.
///      A provider that hides even the list of a batch's receipts is challenged for the batch
///      (`challengeBatch`): it must publish the batch's receipt hashes, in order, which rebuild
///      the committed root (`answerBatch`), or be slashed. An answered challenge refunds the
///      challenger's bond: the data was not served off chain, so asking for it was not wrong.
///  Every conviction is also reported to the PaymentEscrow, which refunds the provider's held
///  payments to its clients. Receipts can be challenged or reported only within
///  `challengeWindow` of their batch's commit (or of their own timestamp, when proven by the
///  signature), so a conviction never reaches back past the holds it refunds.
///
/// @dev Committee randomness and its limits (docs/chain.md): the seed is
///      keccak256(blockhash(drawBlock), id) with drawBlock the block after the opening. No
///      challenger input is in it and the block's hash does not exist when the challenge opens,
///      so grinding addresses or receipts gains nothing. The producer of that block can still
///      bias it (by choosing its contents, or withholding it); on chains where one sequencer
///      builds every block, that sequencer can. If nobody draws within 256 blocks the hash is
///      gone and `drawCommittee` re-targets the next block: the party the first draw favoured
///      must draw in time. A VRF or a beacon can replace the seed without changing anything else.
contract DisputeManager is ReentrancyGuard {
    using SafeERC20 for IERC20;

    enum Kind {
        Wrong,
        Unavailable,
        UnavailableBatch
    }

    /// @notice What a token challenge says fails in a generation's teacher-forced re-check
    ///         (src/runtime/llm/recheck.ts): a claimed token's margin, the prompt ids, how the
    ///         output ends, or the token count. `None`: not a token challenge.
    enum TokenCheck {
        None,
        Margin,
        Prompt,
        Termination,
        Count
    }

    enum Status {
        None,
        Open,
        Upheld,
        Rejected,
        Void,
        /// @dev An availability challenge the provider answered on chain: the bond is refunded.
        Answered
    }

    struct Params {
        address treasury;
        uint256 challengeBond;
        uint16 committeeSize;
        uint64 commitPeriod;
        uint64 revealPeriod;
        uint16 slashBps;
        uint16 rewardBps;
        uint256 votePenalty;
        uint64 answerPeriod;
        uint64 challengeWindow;
        uint32 maxDataBytes;
    }

    /// @notice The first step at which the provider's traced execution and the challenger's part:
    ///         leaf `step` of each trace (OpenZeppelin standard leaf of (uint256 step, bytes32
    ///         hash)), proven against the receipt's traceRoot and the challenger's root, and,
    ///         past step 0, the hash at `step - 1` that both traces share.
    struct Divergence {
        uint64 step;
        bytes32 providerHash;
        bytes32[] providerProof;
        bytes32 challengerRoot;
        bytes32 challengerHash;
        bytes32[] challengerProof;
        bytes32 priorHash;
        bytes32[] priorProviderProof;
        bytes32[] priorChallengerProof;
    }

    struct Challenge {
        address challenger;
        address provider;
        Kind kind;
        Status status;
        /// @dev True when a Divergence was proven: `step` and the two hashes below are set.
        bool traced;
        uint64 step;
        /// @dev Set by `openTokenChallenge`: the check that fails and the first position it names.
        TokenCheck tokenCheck;
        uint32 tokenPosition;
        /// @dev The block whose hash seeds the committee draw (`drawCommittee`).
        uint64 drawBlock;
        uint64 commitDeadline;
        uint64 revealDeadline;
        uint16 committed;
        uint16 revealed;
        uint16 guilty;
        uint16 innocent;
        bytes32 receiptHash;
        /// @dev The challenged receipt's runtime profile: members are drawn among its voters.
        bytes32 runtime;
        /// @dev keccak256(abi.encode(pool, stakes)) of the committee pool as it was when the
        ///      challenge opened, before the draw block's hash existed: the draw uses exactly it.
        bytes32 poolHash;
        uint256 bond;
        bytes32 providerStepHash;
        bytes32 challengerStepHash;
        address[] committee;
    }

    /// @notice One chunk of a challenged receipt's inputs or outputs (src/protocol/data.ts): a
    ///         datum of at most CHUNK_BYTES hashed whole is its own chunk 0 (`root` zero, no
    ///         proof); a longer one is committed to as keccak256(abi.encodePacked(CHUNKS_TAG,
    ///         uint64 length, root)), `root` that of a tree whose leaf i is
    ///         keccak256(abi.encodePacked(uint32 i, keccak256(chunk i))).
    struct Chunk {
        /// @dev False: a chunk of the inputs; true: of the outputs.
        bool outputs;
        uint64 length;
        bytes32 root;
        uint32 index;
        bytes data;
        bytes32[] proof;
    }

    /// @notice Which chunks of an availability challenge's data were published (bit i: chunk i),
    ///         and how many each side has (0: none published yet).
    struct PublishedChunks {
        uint256 inputs;
        uint256 outputs;
        uint16 inputCount;
        uint16 outputCount;
    }

    struct Vote {
        bytes32 commitment;
        /// @dev Tracked on its own: "has committed" never depends on the commitment's value.
        bool committed;
        bool revealed;
        bool guilty;
    }

    uint256 private constant BPS = 10_000;
    /// @notice The size of a data chunk: one chunk's answer fits a transaction on any chain.
    uint256 public constant CHUNK_BYTES = 65_536;
    /// @notice The most chunks of a receipt's inputs, or of its outputs: one word of bits each.
    uint256 public constant MAX_CHUNKS = 256;
    bytes18 private constant CHUNKS_TAG = "glassbox.chunks.v1";

    IERC20 public immutable token;
    ProviderRegistry public immutable providers;
    ModelRegistry public immutable models;
    ReceiptLedger public immutable ledger;
    PaymentEscrow public immutable escrow;
    address public immutable treasury;
    uint256 public immutable challengeBond;
    uint16 public immutable committeeSize;
    /// @notice Seconds from opening a challenge to the end of the commit stage.
    uint64 public immutable commitPeriod;
    /// @notice Seconds from the end of the commit stage to the end of the reveal stage.
    uint64 public immutable revealPeriod;
    uint16 public immutable slashBps;
    uint16 public immutable rewardBps;
    /// @notice Slashed from a committee member that does not reveal, or reveals against the
    ///         verdict; shared among the members who voted with it.
    uint256 public immutable votePenalty;
    /// @notice Seconds a provider has to publish the data named by an availability challenge.
    uint64 public immutable answerPeriod;
    /// @notice Seconds after a batch's commit during which its data can be challenged as
    ///         unavailable: providers keep (and serve) a batch's data for this long, no longer.
    uint64 public immutable challengeWindow;
    /// @notice The most a challengeable receipt's inputs plus outputs (canonical encodings) may
    ///         weigh, at most MAX_CHUNKS chunks: providers refuse larger requests (a receipt they
    ///         could not publish would make them slashable), and clients don't send them.
    uint32 public immutable maxDataBytes;

    Challenge[] private _challenges;
    mapping(uint256 id => mapping(address member => Vote)) private _votes;
    /// @notice Challenge id + 1 of the latest challenge of each receipt struct hash. A receipt can
    ///         be challenged again after a void or rejected verdict (the rejected challenger's
    ///         evidence was its own to choose, so its failure makes no receipt immune), never while
    ///         one is open or after one was upheld.
    mapping(bytes32 receiptHash => uint256) public challengeOfReceipt;
    /// @notice Challenge id + 1 of the latest availability challenge of each receipt struct hash.
    mapping(bytes32 receiptHash => uint256) public availabilityChallengeOf;
    /// @notice Challenge id + 1 of the latest batch availability challenge of each batch.
    mapping(uint256 batchId => uint256) public batchChallengeOf;
    /// @notice Equivocations already punished, keyed by (provider, model, input, params, runtime).
    mapping(bytes32 key => bool) public equivocationReported;
    /// @notice Receipts under an unadmitted runtime already punished, by receipt struct hash.
    mapping(bytes32 receiptHash => bool) public runtimeReported;
    /// @notice The chunks published so far of each availability challenge answered in chunks.
    mapping(uint256 id => PublishedChunks) public publishedChunks;

    event EquivocationSlashed(
        address indexed provider,
        address indexed reporter,
        bytes32 indexed model,
        bytes32 receiptA,
        bytes32 receiptB,
        uint256 slashed,
        uint256 reward
    );
    event UnadmittedRuntimeSlashed(
        address indexed provider,
        address indexed reporter,
        bytes32 indexed runtime,
        bytes32 receiptHash,
        uint256 slashed,
        uint256 reward
    );
    event ChallengeOpened(
        uint256 indexed id,
        address indexed provider,
        address indexed challenger,
        bytes32 receiptHash,
        string inputsUri,
        uint64 drawBlock
    );
    /// @notice The committee pool of challenge `id`, frozen when it opened: the voters of the
    ///         receipt's runtime (neither the accused nor the challenger) and their stakes.
    event CommitteePool(uint256 indexed id, address[] pool, uint256[] stakes);
    /// @notice The committee of challenge `id`, drawn from the hash of its draw block.
    event CommitteeDrawn(uint256 indexed id, address[] committee, uint64 commitDeadline, uint64 revealDeadline);
    /// @notice The draw block's hash was gone (over 256 blocks old): the draw uses `drawBlock` now.
    event DrawDeferred(uint256 indexed id, uint64 drawBlock);
    /// @notice The challenged receipt, for committee members to re-execute (inputs: `inputsUri`).
    event ChallengedReceipt(uint256 indexed id, ReceiptLib.Receipt receipt);
    event DivergenceProven(uint256 indexed id, uint64 step, bytes32 providerHash, bytes32 challengerHash, bytes32 challengerRoot);
    /// @notice A token challenge's claim: `check` fails at output position `position` (for `Prompt`,
    ///         the first differing prompt id's index; for `Count`, 0).
    event TokenDivergenceClaimed(uint256 indexed id, uint32 position, TokenCheck check);
    event AvailabilityChallenged(
        uint256 indexed id,
        address indexed provider,
        address indexed challenger,
        uint256 batchId,
        bytes32 receiptHash,
        uint64 answerDeadline
    );
    event BatchChallenged(
        uint256 indexed id,
        address indexed provider,
        address indexed challenger,
        uint256 batchId,
        uint64 answerDeadline
    );
    /// @notice The withheld list, now public: the batch's receipt struct hashes, in batch order.
    event BatchAnswered(uint256 indexed id, uint256 indexed batchId, bytes32[] receiptHashes);
    /// @notice The withheld data, now public: the receipt and the canonical encodings of its
    ///         inputs and outputs.
    event AvailabilityAnswered(uint256 indexed id, ReceiptLib.Receipt receipt, bytes inputs, bytes outputs);
    /// @notice A chunk of the withheld data, now public (`outputs`: of the outputs, else inputs).
    ///         Indexed by position, so that readers can fetch a large answer a few chunks at a time.
    event AvailabilityChunk(uint256 indexed id, bool indexed outputs, uint32 indexed index, bytes data);
    /// @notice Every chunk of the challenged receipt's inputs and outputs is public: answered.
    event AvailabilityAnsweredInChunks(uint256 indexed id, ReceiptLib.Receipt receipt);
    event VoteCommitted(uint256 indexed id, address indexed member);
    event VoteRevealed(uint256 indexed id, address indexed member, bool guilty);
    event ChallengeResolved(uint256 indexed id, Status status, uint16 guilty, uint16 innocent, uint256 slashed, uint256 reward);
    /// @notice A member that did not reveal, or revealed against the verdict, lost `amount`.
    event VotePenalised(uint256 indexed id, address indexed member, uint256 amount);
    /// @notice A member that voted with the verdict received `amount` of the penalties.
    event VoteRewarded(uint256 indexed id, address indexed member, uint256 amount);

    error InvalidParams();
    error NotEquivocation();
    error SameOutput();
    error ModelNotExact(bytes32 model);
    error InvalidReceiptSignature(address recovered, address provider);
    error AlreadyReported();
    error UnknownProvider(address provider);
    error NotCommitted();
    error AlreadyChallenged(bytes32 receiptHash, uint256 challengeId);
    error SelfChallenge();
    error NoEligibleVoters();
    error UnknownChallenge(uint256 id);
    error ChallengeNotOpen(uint256 id);
    error NotCommitteeMember(address caller);
    error CommitClosed(uint64 commitDeadline);
    error AlreadyVoted();
    error RevealNotOpen(uint64 commitDeadline);
    error RevealClosed(uint64 revealDeadline);
    error NoCommitment();
    error ZeroCommitment();
    error AlreadyRevealed();
    error CommitmentMismatch();
    error TooEarly(uint64 revealDeadline);
    error NoTrace();
    error NoDivergence();
    error NoTokenCheck();
    error InvalidTraceProof(uint64 step);
    error NotAvailabilityChallenge(uint256 id);
    error NotWrongChallenge(uint256 id);
    error AnswerClosed(uint64 answerDeadline);
    error ReceiptMismatch(bytes32 receiptHash);
    error InputsMismatch(bytes32 inputHash);
    error BatchMismatch(uint256 batchId);
    error ChallengeWindowOver(uint256 batchId, uint64 endedAt);
    error ReceiptTooOld(uint64 timestamp, uint64 endedAt);
    error RuntimeNotAdmitted(bytes32 runtime);
    error RuntimeIsAdmitted(bytes32 runtime);
    error AlreadyDrawn(uint256 id);
    error NotDrawnYet(uint64 drawBlock);
    error DrawClosed(uint64 commitDeadline);
    error OutputsMismatch(bytes32 outputHash);
    error PoolMismatch(uint256 id);
    error ChunkMismatch(bool outputs, uint32 index);
    error ChunkAlreadyPublished(bool outputs, uint32 index);

    constructor(
        IERC20 token_,
        ProviderRegistry providers_,
        ModelRegistry models_,
        ReceiptLedger ledger_,
        PaymentEscrow escrow_,
        Params memory p
    ) {
        if (
            p.treasury == address(0) || p.committeeSize == 0 || p.commitPeriod == 0 || p.revealPeriod == 0
                || p.slashBps > BPS || p.rewardBps >= BPS || p.challengeBond == 0 || p.answerPeriod == 0
                || p.challengeWindow == 0 || p.maxDataBytes == 0 || p.maxDataBytes > MAX_CHUNKS * CHUNK_BYTES
        ) revert InvalidParams();
        token = token_;
        providers = providers_;
        models = models_;
        ledger = ledger_;
        escrow = escrow_;
        treasury = p.treasury;
        challengeBond = p.challengeBond;
        committeeSize = p.committeeSize;
        commitPeriod = p.commitPeriod;
        revealPeriod = p.revealPeriod;
        slashBps = p.slashBps;
        rewardBps = p.rewardBps;
        votePenalty = p.votePenalty;
        answerPeriod = p.answerPeriod;
        challengeWindow = p.challengeWindow;
        maxDataBytes = p.maxDataBytes;
    }

    // ---- (a) equivocation ----

    /// @notice Slashes a provider that signed two different outputs for one input of an exact model.
    /// @dev "Exact" is ModelRegistry's flag, the registrant's claim about the manifest (which this
    ///      contract can't read): on a model flagged exact whose outputs are not bit-reproducible,
    ///      honest providers are slashable, so providers check the manifest before offering it.
    ///      A provider reporting itself (from another account) recovers only `rewardBps` of the
    ///      slash and loses the rest to the treasury, as does one challenging its own receipt;
    ///      with `rewardBps` < 100% (the constructor insists) that is always a losing move.
    function reportEquivocation(
        ReceiptLib.Receipt calldata a,
        bytes calldata sigA,
        ReceiptLib.Receipt calldata b,
        bytes calldata sigB
    ) external nonReentrant returns (uint256 slashed) {
        if (
            a.provider != b.provider || a.model != b.model || a.inputHash != b.inputHash
                || a.paramsHash != b.paramsHash || a.runtime != b.runtime
        ) revert NotEquivocation();
        if (a.outputHash == b.outputHash) revert SameOutput();
        if (!models.isExact(a.model)) revert ModelNotExact(a.model);
        _checkSignature(a, sigA);
        _checkSignature(b, sigB);
        _checkAge(a.timestamp > b.timestamp ? a.timestamp : b.timestamp);
        bytes32 key = keccak256(abi.encode(a.provider, a.model, a.inputHash, a.paramsHash, a.runtime));
        if (equivocationReported[key]) revert AlreadyReported();
        equivocationReported[key] = true;
        uint256 reward;
        (slashed, reward) = _slashAndSplit(a.provider, msg.sender);
        emit EquivocationSlashed(a.provider, msg.sender, a.model, ReceiptLib.hash(a), ReceiptLib.hash(b), slashed, reward);
    }

    function _checkSignature(ReceiptLib.Receipt calldata r, bytes calldata sig) private view {
        address signer = ledger.recoverSigner(r, sig);
        if (!providers.isSigner(r.provider, signer)) revert InvalidReceiptSignature(signer, r.provider);
    }

    /// @dev A receipt proven by its signature alone can be used within `challengeWindow` of its
    ///      timestamp (ms), as one proven in a batch within the window of the batch's commit.
    function _checkAge(uint64 timestampMs) private view {
        uint64 endsAt = timestampMs / 1000 + challengeWindow;
        if (block.timestamp > endsAt) revert ReceiptTooOld(timestampMs, endsAt);
    }

    /// @dev The provider's signature over `receipt` (when `signature` is non-empty) or its
    ///      inclusion in batch `batchId` committed by the receipt's provider, within the window.
    function _checkEvidence(
        ReceiptLib.Receipt calldata receipt,
        bytes calldata signature,
        uint256 batchId,
        bytes32[] calldata proof
    ) private view {
        address provider = receipt.provider;
        if (!providers.isRegistered(provider)) revert UnknownProvider(provider);
        if (provider == msg.sender) revert SelfChallenge();
        if (signature.length != 0) {
            _checkSignature(receipt, signature);
            _checkAge(receipt.timestamp);
        } else {
            if (!ledger.isCommitted(batchId, receipt, proof)) revert NotCommitted();
            _checkWindow(batchId, ledger.getBatch(batchId));
        }
    }

    /// @dev Convicts the provider (its held payments go back to its clients) and slashes
    ///      `slashBps` of its stake and unbonding stake; `rewardBps` of that goes to `winner`, the
    ///      rest to the treasury.
    function _slashAndSplit(address provider, address winner) private returns (uint256 slashed, uint256 reward) {
        escrow.convict(provider);
        ProviderRegistry.Provider memory p = providers.getProvider(provider);
        slashed = providers.slash(provider, ((p.stake + p.unbonding) * slashBps) / BPS);
        reward = (slashed * rewardBps) / BPS;
        if (reward != 0) token.safeTransfer(winner, reward);
        if (slashed - reward != 0) token.safeTransfer(treasury, slashed - reward);
    }

    // ---- (b) unadmitted runtimes ----

    /// @notice Slashes a provider for a receipt (signed, or in a batch it committed) under a
    ///         runtime profile the ProviderRegistry never admitted: an answer nobody can check.
    ///         Once per receipt: each such answer is its own offence.
    function reportUnadmittedRuntime(
        ReceiptLib.Receipt calldata receipt,
        bytes calldata signature,
        uint256 batchId,
        bytes32[] calldata proof
    ) external nonReentrant returns (uint256 slashed) {
        if (providers.admittedRuntime(receipt.runtime)) revert RuntimeIsAdmitted(receipt.runtime);
        _checkEvidence(receipt, signature, batchId, proof);
        bytes32 receiptHash = ReceiptLib.hash(receipt);
        if (runtimeReported[receiptHash]) revert AlreadyReported();
        runtimeReported[receiptHash] = true;
        uint256 reward;
        (slashed, reward) = _slashAndSplit(receipt.provider, msg.sender);
        emit UnadmittedRuntimeSlashed(receipt.provider, msg.sender, receipt.runtime, receiptHash, slashed, reward);
    }

    // ---- (c) challenges ----

    /// @notice Challenges `receipt` as wrong. Evidence is either the provider's signature (when
    ///         `signature` is non-empty) or a Merkle proof that it is in batch `batchId`, which the
    ///         provider committed. Pulls `challengeBond` from the caller (approve first). Until the
    ///         challenge is resolved the provider can't withdraw any stake, unbonding included.
    ///         The committee is drawn by `drawCommittee` from the next block on.
    function openChallenge(
        ReceiptLib.Receipt calldata receipt,
        bytes calldata signature,
        uint256 batchId,
        bytes32[] calldata proof,
        string calldata inputsUri
    ) external nonReentrant returns (uint256 id) {
        id = _openChallenge(receipt, signature, batchId, proof, inputsUri);
    }

    /// @notice `openChallenge`, naming the first step at which the provider's trace (the
    ///         receipt's traceRoot) and the challenger's re-execution part, with Merkle proofs of
    ///         both hashes at that step and of the hash both share at the step before.
    function openTracedChallenge(
        ReceiptLib.Receipt calldata receipt,
        bytes calldata signature,
        uint256 batchId,
        bytes32[] calldata proof,
        string calldata inputsUri,
        Divergence calldata divergence
    ) external nonReentrant returns (uint256 id) {
        _checkDivergence(receipt.traceRoot, divergence);
        id = _openChallenge(receipt, signature, batchId, proof, inputsUri);
        Challenge storage c = _challenges[id];
        c.traced = true;
        c.step = divergence.step;
        c.providerStepHash = divergence.providerHash;
        c.challengerStepHash = divergence.challengerHash;
        emit DivergenceProven(id, divergence.step, divergence.providerHash, divergence.challengerHash, divergence.challengerRoot);
    }

    /// @notice `openChallenge` for a generation (a receipt of an LLM model): names what the
    ///         challenger's teacher-forced re-check found wrong, `check`, and the first output
    ///         position where it does (docs/protocol.md, Re-checking a generation in a dispute), so
    ///         members score the generation only through that position. The bond, the committee,
    ///         the votes and the verdict are those of any challenge: a claim that does not hold is a
    ///         rejected challenge, its bond lost.
    function openTokenChallenge(
        ReceiptLib.Receipt calldata receipt,
        bytes calldata signature,
        uint256 batchId,
        bytes32[] calldata proof,
        string calldata inputsUri,
        uint32 position,
        TokenCheck check
    ) external nonReentrant returns (uint256 id) {
        if (check == TokenCheck.None) revert NoTokenCheck();
        id = _openChallenge(receipt, signature, batchId, proof, inputsUri);
        Challenge storage c = _challenges[id];
        c.tokenCheck = check;
        c.tokenPosition = position;
        emit TokenDivergenceClaimed(id, position, check);
    }

    function _checkDivergence(bytes32 traceRoot, Divergence calldata d) private pure {
        if (traceRoot == bytes32(0)) revert NoTrace();
        if (d.providerHash == d.challengerHash) revert NoDivergence();
        if (
            !MerkleProof.verifyCalldata(d.providerProof, traceRoot, _traceLeaf(d.step, d.providerHash))
                || !MerkleProof.verifyCalldata(d.challengerProof, d.challengerRoot, _traceLeaf(d.step, d.challengerHash))
        ) revert InvalidTraceProof(d.step);
        if (d.step == 0) return;
        bytes32 prior = _traceLeaf(d.step - 1, d.priorHash);
        if (
            !MerkleProof.verifyCalldata(d.priorProviderProof, traceRoot, prior)
                || !MerkleProof.verifyCalldata(d.priorChallengerProof, d.challengerRoot, prior)
        ) revert InvalidTraceProof(d.step - 1);
    }

    /// @dev A trace leaf, as src/protocol/merkle.ts `traceTree` builds it.
    function _traceLeaf(uint256 step, bytes32 tensorHash) private pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(step, tensorHash))));
    }

    function _openChallenge(
        ReceiptLib.Receipt calldata receipt,
        bytes calldata signature,
        uint256 batchId,
        bytes32[] calldata proof,
        string calldata inputsUri
    ) private returns (uint256 id) {
        _checkEvidence(receipt, signature, batchId, proof);
        // nobody runs an unadmitted runtime, so no committee could judge it: report it instead
        if (!providers.admittedRuntime(receipt.runtime)) revert RuntimeNotAdmitted(receipt.runtime);
        bytes32 receiptHash = ReceiptLib.hash(receipt);
        uint256 prior = challengeOfReceipt[receiptHash];
        if (prior != 0) {
            // A rejected challenge proves only that that challenger's case failed (its evidence was
            // the challenger's to choose), so the receipt stays challengeable; an open or upheld one
            // blocks, so a receipt is slashed at most once.
            Status s = _challenges[prior - 1].status;
            if (s == Status.Open || s == Status.Upheld) revert AlreadyChallenged(receiptHash, prior - 1);
        }

        id = _challenges.length;
        challengeOfReceipt[receiptHash] = id + 1;
        Challenge storage c = _push(receipt.provider, Kind.Wrong, receiptHash, commitPeriod);
        c.revealDeadline = c.commitDeadline + revealPeriod;
        c.runtime = receipt.runtime;
        c.drawBlock = uint64(block.number) + 1;
        _freezePool(id, c);
        emit ChallengeOpened(id, receipt.provider, msg.sender, receiptHash, inputsUri, c.drawBlock);
        emit ChallengedReceipt(id, receipt);
    }

    /// @dev Records (by hash, and in full in an event) the pool the committee will be drawn from,
    ///      now, before the draw block's hash exists: a pool read at the draw could be reshaped
    ///      (stake, pause, runtime, opting out) by whoever has seen that hash, and regrinds the draw.
    function _freezePool(uint256 id, Challenge storage c) private {
        (address[] memory pool, uint256[] memory stakes) = providers.eligibleVoters(c.provider, msg.sender, c.runtime);
        if (pool.length == 0) revert NoEligibleVoters();
        c.poolHash = keccak256(abi.encode(pool, stakes));
        emit CommitteePool(id, pool, stakes);
    }

    /// @notice Draws the committee of challenge `id` (anyone may call; the challenger and the
    ///         accused both have reason to) once its draw block exists and within the first half
    ///         of the commit period (members get at least the other half to judge): up to
    ///         `committeeSize` of the pool frozen at the opening (`pool`, `stakes` as its
    ///         CommitteePool event has them), stake-weighted without replacement, seeded by the
    ///         draw block's hash and the id.
    function drawCommittee(uint256 id, address[] calldata pool, uint256[] calldata stakes)
        external
        returns (address[] memory committee)
    {
        Challenge storage c = _openWrong(id);
        if (c.committee.length != 0) revert AlreadyDrawn(id);
        uint64 drawDeadline = c.commitDeadline - commitPeriod / 2;
        if (block.timestamp >= drawDeadline) revert DrawClosed(drawDeadline);
        if (block.number <= c.drawBlock) revert NotDrawnYet(c.drawBlock);
        if (keccak256(abi.encode(pool, stakes)) != c.poolHash) revert PoolMismatch(id);
        bytes32 blockHash = blockhash(c.drawBlock);
        if (blockHash == bytes32(0)) {
            // over 256 blocks old: its hash is gone, so draw from the next block instead
            c.drawBlock = uint64(block.number);
            emit DrawDeferred(id, c.drawBlock);
            return committee;
        }
        committee = _draw(pool, stakes, keccak256(abi.encode(blockHash, id)));
        c.committee = committee;
        emit CommitteeDrawn(id, committee, c.commitDeadline, c.revealDeadline);
    }

    /// @dev Appends a challenge by the caller, locks the provider's stake and takes the bond.
    function _push(address provider, Kind kind, bytes32 receiptHash, uint64 period) private returns (Challenge storage c) {
        c = _challenges.push();
        c.challenger = msg.sender;
        c.provider = provider;
        c.kind = kind;
        c.status = Status.Open;
        c.commitDeadline = uint64(block.timestamp) + period;
        c.revealDeadline = c.commitDeadline;
        c.receiptHash = receiptHash;
        c.bond = challengeBond;
        providers.lockStake(provider);
        token.safeTransferFrom(msg.sender, address(this), challengeBond);
    }

    // ---- (d) availability ----

    /// @notice Claims that `provider` does not serve the receipt with struct hash `receiptHash`,
    ///         proven to be in its batch `batchId`. Pulls `challengeBond`. Unless someone
    ///         publishes the receipt and its data (`answerAvailability`, or chunk by chunk
    ///         `answerAvailabilityChunk`) within `answerPeriod`,
    ///         `resolve` upholds the challenge and slashes the provider.
    function challengeAvailability(address provider, uint256 batchId, bytes32 receiptHash, bytes32[] calldata proof)
        external
        nonReentrant
        returns (uint256 id)
    {
        if (!providers.isRegistered(provider)) revert UnknownProvider(provider);
        if (provider == msg.sender) revert SelfChallenge();
        ReceiptLedger.Batch memory b = ledger.getBatch(batchId);
        if (b.provider != provider || !ledger.verifyInclusion(batchId, receiptHash, proof)) revert NotCommitted();
        _checkWindow(batchId, b);
        // once decided, final: answered, the data is public; upheld, the provider was slashed
        uint256 prior = availabilityChallengeOf[receiptHash];
        if (prior != 0) revert AlreadyChallenged(receiptHash, prior - 1);
        id = _challenges.length;
        availabilityChallengeOf[receiptHash] = id + 1;
        Challenge storage c = _push(provider, Kind.Unavailable, receiptHash, answerPeriod);
        emit AvailabilityChallenged(id, provider, msg.sender, batchId, receiptHash, c.commitDeadline);
    }

    /// @notice Publishes the receipt an availability challenge names and the canonical encodings
    ///         of its inputs and outputs, each at most one chunk and hashed whole, which settles the
    ///         challenge for the provider (anyone may answer: data is data). The challenger's bond
    ///         is refunded. Larger data is published with `answerAvailabilityChunk`.
    function answerAvailability(
        uint256 id,
        ReceiptLib.Receipt calldata receipt,
        bytes calldata inputs,
        bytes calldata outputs
    ) external nonReentrant {
        Challenge storage c = _answerable(id, receipt);
        if (!_isWhole(inputs, receipt.inputHash)) revert InputsMismatch(receipt.inputHash);
        if (!_isWhole(outputs, receipt.outputHash)) revert OutputsMismatch(receipt.outputHash);
        emit AvailabilityAnswered(id, receipt, inputs, outputs);
        _answered(id, c);
    }

    /// @notice Publishes one chunk of the inputs or outputs of the receipt an availability
    ///         challenge names, proven against its inputHash or outputHash (anyone may: data is
    ///         data). Once every chunk of both is published, the challenge is answered as by
    ///         `answerAvailability`. A datum hashed whole is published as its chunk 0.
    function answerAvailabilityChunk(uint256 id, ReceiptLib.Receipt calldata receipt, Chunk calldata chunk)
        external
        nonReentrant
    {
        Challenge storage c = _answerable(id, receipt);
        uint16 count = _checkChunk(chunk.outputs ? receipt.outputHash : receipt.inputHash, chunk);
        PublishedChunks storage p = publishedChunks[id];
        uint256 bits = chunk.outputs ? p.outputs : p.inputs;
        uint256 bit = 1 << chunk.index;
        if (bits & bit != 0) revert ChunkAlreadyPublished(chunk.outputs, chunk.index);
        if (chunk.outputs) (p.outputs, p.outputCount) = (bits | bit, count);
        else (p.inputs, p.inputCount) = (bits | bit, count);
        emit AvailabilityChunk(id, chunk.outputs, chunk.index, chunk.data);
        if (_complete(p.inputs, p.inputCount) && _complete(p.outputs, p.outputCount)) {
            emit AvailabilityAnsweredInChunks(id, receipt);
            _answered(id, c);
        }
    }

    /// @dev The open availability challenge `id`, within its answer period, of this receipt.
    function _answerable(uint256 id, ReceiptLib.Receipt calldata receipt) private view returns (Challenge storage c) {
        c = _open(id);
        if (c.kind != Kind.Unavailable) revert NotAvailabilityChallenge(id);
        if (block.timestamp >= c.commitDeadline) revert AnswerClosed(c.commitDeadline);
        if (ReceiptLib.hash(receipt) != c.receiptHash) revert ReceiptMismatch(c.receiptHash);
    }

    /// @dev Whether `data` is the datum `hash` commits to whole: at most a chunk, and not shaped
    ///      like a chunked commitment's preimage (which would open that commitment with 58 bytes).
    function _isWhole(bytes calldata data, bytes32 hash) private pure returns (bool) {
        return data.length <= CHUNK_BYTES && !_isChunksHeader(data) && keccak256(data) == hash;
    }

    function _isChunksHeader(bytes calldata data) private pure returns (bool) {
        return data.length == 58 && bytes18(data[:18]) == CHUNKS_TAG;
    }

    /// @dev Checks `k` is chunk `k.index` of the datum `hash` commits to (src/protocol/data.ts
    ///      `verifyChunk`); returns how many chunks that datum has.
    function _checkChunk(bytes32 hash, Chunk calldata k) private pure returns (uint16) {
        if (k.root == bytes32(0)) {
            if (k.index != 0 || k.length != k.data.length || !_isWhole(k.data, hash)) {
                revert ChunkMismatch(k.outputs, k.index);
            }
            return 1;
        }
        uint256 count = (uint256(k.length) + CHUNK_BYTES - 1) / CHUNK_BYTES;
        uint256 index = k.index;
        // committed to in chunks only when longer than a chunk, or shaped like a chunks header
        bool canonical = count > 1 || (count == 1 && _isChunksHeader(k.data));
        if (!canonical || count > MAX_CHUNKS || index >= count) revert ChunkMismatch(k.outputs, k.index);
        uint256 size = index + 1 < count ? CHUNK_BYTES : k.length - (count - 1) * CHUNK_BYTES;
        if (
            k.data.length != size || keccak256(abi.encodePacked(CHUNKS_TAG, k.length, k.root)) != hash
                || !MerkleProof.verifyCalldata(k.proof, k.root, keccak256(abi.encodePacked(k.index, keccak256(k.data))))
        ) revert ChunkMismatch(k.outputs, k.index);
        return uint16(count);
    }

    /// @dev Whether all `count` chunks of a side are in `bits` (count 0: none was published yet).
    function _complete(uint256 bits, uint16 count) private pure returns (bool) {
        return count != 0 && bits == type(uint256).max >> (256 - count);
    }

    /// @notice Claims that the provider of batch `batchId` does not serve even the list of its
    ///         receipts. Pulls `challengeBond`. Unless someone publishes the batch's receipt
    ///         hashes (`answerBatch`) within `answerPeriod`, `resolve` upholds it and slashes.
    function challengeBatch(uint256 batchId) external nonReentrant returns (uint256 id) {
        ReceiptLedger.Batch memory b = ledger.getBatch(batchId);
        if (b.provider == msg.sender) revert SelfChallenge();
        _checkWindow(batchId, b);
        uint256 prior = batchChallengeOf[batchId];
        if (prior != 0) revert AlreadyChallenged(b.root, prior - 1);
        id = _challenges.length;
        batchChallengeOf[batchId] = id + 1;
        Challenge storage c = _push(b.provider, Kind.UnavailableBatch, b.root, answerPeriod);
        emit BatchChallenged(id, b.provider, msg.sender, batchId, c.commitDeadline);
    }

    /// @notice Publishes the receipt struct hashes of the challenged batch, in batch order: they
    ///         must be as many as committed and rebuild the committed root (which binds the set
    ///         and the order up to swapping two sibling leaves, since pairs hash commutatively).
    ///         Settles the challenge for the provider and refunds the bond; each receipt can then
    ///         be named by `challengeAvailability`.
    function answerBatch(uint256 id, uint256 batchId, bytes32[] calldata receiptHashes) external nonReentrant {
        Challenge storage c = _open(id);
        if (c.kind != Kind.UnavailableBatch) revert NotAvailabilityChallenge(id);
        if (block.timestamp >= c.commitDeadline) revert AnswerClosed(c.commitDeadline);
        ReceiptLedger.Batch memory b = ledger.getBatch(batchId);
        if (b.root != c.receiptHash || b.provider != c.provider || receiptHashes.length != b.count) {
            revert BatchMismatch(batchId);
        }
        if (_batchRoot(receiptHashes) != b.root) revert BatchMismatch(batchId);
        emit BatchAnswered(id, batchId, receiptHashes);
        _answered(id, c);
    }

    /// @dev The data was published, so the provider is cleared; but it was not served off chain,
    ///      so the challenger was right to ask: its bond comes back whole.
    function _answered(uint256 id, Challenge storage c) private {
        c.status = Status.Answered;
        providers.unlockStake(c.provider);
        token.safeTransfer(c.challenger, c.bond);
        emit ChallengeResolved(id, Status.Answered, 0, 0, 0, 0);
    }

    /// @dev The root of OpenZeppelin's StandardMerkleTree over `receiptHashes` in this order
    ///      (src/protocol/merkle.ts `batchTree`): leaves at the end of a heap array in reverse,
    ///      each parent the commutative hash of its children. Linear in the batch size.
    function _batchRoot(bytes32[] calldata receiptHashes) private pure returns (bytes32) {
        uint256 n = receiptHashes.length;
        bytes32[] memory tree = new bytes32[](2 * n - 1);
        for (uint256 i; i < n; ++i) tree[2 * n - 2 - i] = ReceiptLib.leaf(receiptHashes[i]);
        for (uint256 k = n - 1; k > 0;) {
            --k;
            tree[k] = Hashes.commutativeKeccak256(tree[2 * k + 1], tree[2 * k + 2]);
        }
        return tree[0];
    }

    function _checkWindow(uint256 batchId, ReceiptLedger.Batch memory b) private view {
        uint64 endsAt = b.committedAt + challengeWindow;
        if (block.timestamp > endsAt) revert ChallengeWindowOver(batchId, endsAt);
    }

    // ---- the committee ----

    /// @dev Stake-weighted sampling without replacement of up to `committeeSize` of `pool`.
    ///      O(committeeSize x pool).
    function _draw(address[] calldata pool, uint256[] calldata stakesIn, bytes32 seed)
        private
        view
        returns (address[] memory committee)
    {
        uint256[] memory stakes = stakesIn;
        uint256 n = pool.length;
        uint256 size = n < committeeSize ? n : committeeSize;
        uint256 total;
        for (uint256 i; i < n; ++i) total += stakes[i];
        committee = new address[](size);
        for (uint256 j; j < size; ++j) {
            uint256 r = uint256(keccak256(abi.encode(seed, j))) % total;
            uint256 i;
            while (r >= stakes[i]) {
                r -= stakes[i];
                ++i;
            }
            committee[j] = pool[i];
            total -= stakes[i];
            stakes[i] = 0;
        }
    }

    /// @notice The commitment a member submits: keccak256(abi.encode(id, member, guilty, salt)).
    function voteCommitment(uint256 id, address member, bool guilty, bytes32 salt) public pure returns (bytes32) {
        return keccak256(abi.encode(id, member, guilty, salt));
    }

    /// @notice Commits a hidden vote, once per member; a zero commitment is refused. A member that
    ///         can't judge commits nothing (and pays `votePenalty`, as any member that does not reveal).
    function commitVote(uint256 id, bytes32 commitment) external {
        Challenge storage c = _openWrong(id);
        if (!_isMember(c, msg.sender)) revert NotCommitteeMember(msg.sender);
        if (block.timestamp >= c.commitDeadline) revert CommitClosed(c.commitDeadline);
        if (commitment == bytes32(0)) revert ZeroCommitment();
        Vote storage v = _votes[id][msg.sender];
        if (v.committed) revert AlreadyVoted();
        v.commitment = commitment;
        v.committed = true;
        ++c.committed;
        emit VoteCommitted(id, msg.sender);
    }

    /// @notice Reveals a committed vote; open once every member committed or the commit stage ended.
    function revealVote(uint256 id, bool guilty, bytes32 salt) external {
        Challenge storage c = _openWrong(id);
        Vote storage v = _votes[id][msg.sender];
        if (!v.committed) revert NoCommitment();
        if (v.revealed) revert AlreadyRevealed();
        if (block.timestamp < c.commitDeadline && c.committed < c.committee.length) revert RevealNotOpen(c.commitDeadline);
        if (block.timestamp >= c.revealDeadline) revert RevealClosed(c.revealDeadline);
        if (voteCommitment(id, msg.sender, guilty, salt) != v.commitment) revert CommitmentMismatch();
        v.revealed = true;
        v.guilty = guilty;
        ++c.revealed;
        if (guilty) ++c.guilty;
        else ++c.innocent;
        emit VoteRevealed(id, msg.sender, guilty);
    }

    /// @notice Settles a challenge once every member revealed or the reveal stage ended; an
    ///         availability challenge nobody answered, once its answer period ended. Anyone may
    ///         call. A verdict needs an absolute majority of the committee (more than half of it
    ///         voting guilty, or innocent); anything else is void and refunds the bond.
    function resolve(uint256 id) external nonReentrant returns (Status status) {
        Challenge storage c = _open(id);
        bool unanswered = c.kind != Kind.Wrong;
        uint256 size = c.committee.length;
        if (block.timestamp < c.revealDeadline && (unanswered || size == 0 || c.revealed < size)) {
            revert TooEarly(c.revealDeadline);
        }
        uint256 slashed;
        uint256 reward;
        providers.unlockStake(c.provider);
        if (unanswered || 2 * uint256(c.guilty) > size && size != 0) {
            status = Status.Upheld;
            c.status = status;
            (slashed, reward) = _slashAndSplit(c.provider, c.challenger);
            token.safeTransfer(c.challenger, c.bond);
        } else if (2 * uint256(c.innocent) > size && size != 0) {
            status = Status.Rejected;
            (slashed, reward) = _reject(c);
        } else {
            status = Status.Void;
            c.status = status;
            token.safeTransfer(c.challenger, c.bond);
        }
        _settleVotes(id, c, status);
        emit ChallengeResolved(id, status, c.guilty, c.innocent, slashed, reward);
    }

    /// @dev The provider was right: it gets `rewardBps` of the bond, the treasury the rest.
    function _reject(Challenge storage c) private returns (uint256 bond, uint256 reward) {
        c.status = Status.Rejected;
        bond = c.bond;
        reward = (bond * rewardBps) / BPS;
        if (reward != 0) token.safeTransfer(c.provider, reward);
        if (bond - reward != 0) token.safeTransfer(treasury, bond - reward);
    }

    /// @dev Members that did not reveal, or (on a verdict) revealed against it, lose `votePenalty`;
    ///      what is taken is shared equally by the members that voted with the verdict (the
    ///      treasury keeps the rest, or all of it when nobody did).
    function _settleVotes(uint256 id, Challenge storage c, Status status) private {
        if (votePenalty == 0) return;
        address[] storage members = c.committee;
        uint256 n = members.length;
        bool decided = status == Status.Upheld || status == Status.Rejected;
        bool verdict = status == Status.Upheld;
        uint256 pot;
        uint256 right;
        for (uint256 i; i < n; ++i) {
            Vote storage v = _votes[id][members[i]];
            if (!v.revealed || (decided && v.guilty != verdict)) {
                uint256 taken = providers.slash(members[i], votePenalty);
                pot += taken;
                emit VotePenalised(id, members[i], taken);
            } else if (decided) {
                ++right;
            }
        }
        uint256 share = right == 0 ? 0 : pot / right;
        if (share != 0) {
            for (uint256 i; i < n; ++i) {
                Vote storage v = _votes[id][members[i]];
                if (!v.revealed || v.guilty != verdict) continue;
                token.safeTransfer(members[i], share);
                emit VoteRewarded(id, members[i], share);
            }
        }
        if (pot - share * right != 0) token.safeTransfer(treasury, pot - share * right);
    }

    function _open(uint256 id) private view returns (Challenge storage c) {
        if (id >= _challenges.length) revert UnknownChallenge(id);
        c = _challenges[id];
        if (c.status != Status.Open) revert ChallengeNotOpen(id);
    }

    function _openWrong(uint256 id) private view returns (Challenge storage c) {
        c = _open(id);
        if (c.kind != Kind.Wrong) revert NotWrongChallenge(id);
    }

    function _isMember(Challenge storage c, address account) private view returns (bool) {
        uint256 n = c.committee.length;
        for (uint256 i; i < n; ++i) if (c.committee[i] == account) return true;
        return false;
    }

    // ---- views ----

    function challengeCount() external view returns (uint256) {
        return _challenges.length;
    }

    function getChallenge(uint256 id) external view returns (Challenge memory) {
        if (id >= _challenges.length) revert UnknownChallenge(id);
        return _challenges[id];
    }

    function getVote(uint256 id, address member) external view returns (Vote memory) {
        return _votes[id][member];
    }
}
