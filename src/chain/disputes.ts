import { bytesToHex, encodeAbiParameters, hexToBytes, keccak256, type Address, type Hex } from 'viem';
import { joinChunks, type DataChunk } from '../protocol/data.js';
import type { Receipt, SignedReceipt } from '../protocol/receipt.js';
import { DisputeManagerEnums } from './artifacts/index.js';
import { accountOf, eventsOf, secondsToMs, type GlassboxClient, type TxResult } from './client.js';
import { ABIS, readFrom, sendTo } from './contracts.js';
import type { ChainCallErrorType, ContractRevertErrorType } from './errors.js';
import { withAllowance } from './token.js';
import { getEvents } from './events.js';
import { GlassboxError } from '../protocol/errors.js';

/** The token's refusals when a challenge bond is pulled (balance or allowance too low). */
type BondErrorType = ContractRevertErrorType<'ERC20InsufficientBalance' | 'ERC20InsufficientAllowance'>;

/** A call on a challenge that is not open (DisputeManager._open), or not a `wrong` one (_openWrong). */
type NotOpenRevertName = 'UnknownChallenge' | 'ChallengeNotOpen';
type NotOpenWrongRevertName = NotOpenRevertName | 'NotWrongChallenge';

/** What the chain refuses a receipt as evidence for (DisputeManager._checkEvidence). */
type EvidenceRevertName =
  | 'UnknownProvider'
  | 'SelfChallenge'
  | 'InvalidReceiptSignature'
  | 'ReceiptTooOld'
  | 'NotCommitted'
  | 'ChallengeWindowOver';

export type ReportEquivocationErrorType =
  | ContractRevertErrorType<
      | 'NotEquivocation'
      | 'SameOutput'
      | 'ModelNotExact'
      | 'InvalidReceiptSignature'
      | 'ReceiptTooOld'
      | 'AlreadyReported'
    >
  | ChainCallErrorType;

/** Slashes a provider for two receipts that give one input of an exact model different outputs. */
export async function reportEquivocation(
  client: GlassboxClient,
  params: { a: SignedReceipt; b: SignedReceipt },
): Promise<TxResult & { slashed: bigint; reward: bigint }> {
  const { a, b } = params;
  const tx = await sendTo(client, 'disputeManager', 'reportEquivocation', [
    a.receipt,
    a.signature,
    b.receipt,
    b.signature,
  ]);
  const [event] = eventsOf(ABIS.disputeManager, 'EquivocationSlashed', tx.receipt.logs);
  return { ...tx, slashed: event?.slashed ?? 0n, reward: event?.reward ?? 0n };
}

/**
 * The first step at which the provider's traced run and the challenger's part, with proofs:
 * `providerHash` against the receipt's traceRoot, `challengerHash` against `challengerRoot`,
 * and past step 0 the hash both traces share at `step - 1` (DisputeManager.Divergence).
 */
export type DivergenceProof = {
  readonly step: number;
  readonly providerHash: Hex;
  readonly providerProof: readonly Hex[];
  readonly challengerRoot: Hex;
  readonly challengerHash: Hex;
  readonly challengerProof: readonly Hex[];
  readonly priorHash: Hex;
  readonly priorProviderProof: readonly Hex[];
  readonly priorChallengerProof: readonly Hex[];
};

/**
 * Our names of DisputeManager's `TokenCheck` members (checked against the contract's enum as for
 * `Status`): what a generation's re-check found wrong (src/runtime/llm/recheck.ts `RecheckCheck`,
 * whose `margins` is `margin` here). `none` marks a challenge that is not a token challenge.
 */
const TOKEN_CHECK_NAMES = {
  None: 'none',
  Margin: 'margin',
  Prompt: 'prompt',
  Termination: 'termination',
  Count: 'count',
} as const satisfies Record<(typeof DisputeManagerEnums.TokenCheck)[number], string>;
export const TOKEN_CHECK = DisputeManagerEnums.TokenCheck.map((member) => TOKEN_CHECK_NAMES[member]);
export type TokenCheckName = Exclude<(typeof TOKEN_CHECK_NAMES)[keyof typeof TOKEN_CHECK_NAMES], 'none'>;

/**
 * A token challenge's claim: `check` fails at `position`, the first output position where it does
 * (for `prompt`, the index of the first differing prompt id; for `count`, 0).
 */
export type TokenClaim = { readonly position: number; readonly check: TokenCheckName };

export type OpenChallengeParameters = {
  readonly receipt: Receipt;
  /** The provider's signature over the receipt; or, instead, a batch inclusion proof. */
  readonly signature?: Hex;
  readonly batchId?: bigint;
  readonly proof?: readonly Hex[];
  /** Where the committee can fetch the receipt's inputs. */
  readonly inputsUri: string;
} & (
  | {
      /** Trace bisection: the first divergent step, when both runs were traced. */
      readonly divergence?: DivergenceProof;
      readonly token?: undefined;
    }
  | {
      /** A generation's re-check: what fails, and where (DisputeManager.openTokenChallenge). */
      readonly token: TokenClaim;
      readonly divergence?: undefined;
    }
);

/**
 * Why `openChallenge` fails. `AlreadyChallenged` carries the challenge that blocks this one (open
 * or upheld): `[receiptHash, challengeId]`.
 */
export type OpenChallengeErrorType =
  | ContractRevertErrorType<
      | EvidenceRevertName
      | 'AlreadyChallenged'
      | 'RuntimeNotAdmitted'
      | 'NoEligibleVoters'
      | 'NoTrace'
      | 'NoDivergence'
      | 'InvalidTraceProof'
      | 'NoTokenCheck'
    >
  | BondErrorType
  | ChainCallErrorType;

/**
 * Opens a challenge (approving the bond first if needed): plain, traced (`divergence`) or of a
 * generation (`token`); returns its id and the block whose hash will seed its committee
 * (`drawCommittee` once the block after it exists).
 */
export async function openChallenge(
  client: GlassboxClient,
  params: OpenChallengeParameters,
): Promise<TxResult & { challengeId: bigint; drawBlock: bigint }> {
  const args = [
    params.receipt,
    params.signature ?? '0x',
    params.batchId ?? 0n,
    params.proof ?? [],
    params.inputsUri,
  ] as const;
  const { divergence, token } = params;
  const tx = await withAllowance(client, 'disputeManager', client.deployment.params.challengeBond, (held) =>
    divergence
      ? sendTo(held, 'disputeManager', 'openTracedChallenge', [
          ...args,
          { ...divergence, step: BigInt(divergence.step) },
        ])
      : token
        ? sendTo(held, 'disputeManager', 'openTokenChallenge', [
            ...args,
            token.position,
            TOKEN_CHECK.indexOf(token.check),
          ])
        : sendTo(held, 'disputeManager', 'openChallenge', args),
  );
  const [event] = eventsOf(ABIS.disputeManager, 'ChallengeOpened', tx.receipt.logs);
  return { ...tx, challengeId: event!.id, drawBlock: event!.drawBlock };
}

export type DrawCommitteeErrorType =
  | ContractRevertErrorType<
      NotOpenWrongRevertName | 'AlreadyDrawn' | 'DrawClosed' | 'NotDrawnYet' | 'PoolMismatch'
    >
  | ChainCallErrorType;

/**
 * Draws the committee of an open challenge (anyone may) once its draw block exists; returns the
 * committee, or `deferred` when the draw block's hash was gone (then draw again a block later).
 */
export async function drawCommittee(
  client: GlassboxClient,
  challengeId: bigint,
): Promise<TxResult & { committee: readonly Address[]; deferred: boolean }> {
  const pool = await getCommitteePool(client, challengeId);
  const tx = await sendTo(client, 'disputeManager', 'drawCommittee', [
    challengeId,
    pool.map((v) => v.address),
    pool.map((v) => v.stake),
  ]);
  const [event] = eventsOf(ABIS.disputeManager, 'CommitteeDrawn', tx.receipt.logs);
  return { ...tx, committee: event?.committee ?? [], deferred: event === undefined };
}

/**
 * The committee pool a challenge froze when it opened (from its CommitteePool event): the voters
 * its committee is drawn from, with their stakes, in the order the draw walks them.
 */
export async function getCommitteePool(
  client: GlassboxClient,
  challengeId: bigint,
): Promise<{ address: Address; stake: bigint }[]> {
  const [event] = await getEvents(client, {
    contract: 'disputeManager',
    eventName: 'CommitteePool',
    args: { id: challengeId },
  });
  if (!event)
    throw new GlassboxError('CHAIN_DEPLOYMENT', `challenge ${challengeId} has no CommitteePool event`, {
      details: { challengeId: challengeId.toString() },
    });
  return event.args.pool.map((address, i) => ({ address, stake: event.args.stakes[i]! }));
}

/** `AlreadyReported`: this receipt's runtime was reported before (by anyone). */
export type ReportUnadmittedRuntimeErrorType =
  ContractRevertErrorType<EvidenceRevertName | 'RuntimeIsAdmitted' | 'AlreadyReported'> | ChainCallErrorType;

/**
 * Slashes a provider for a receipt under a runtime profile that was never admitted (evidence as
 * for `openChallenge`: its signature, or a batch inclusion proof). Once per receipt.
 */
export async function reportUnadmittedRuntime(
  client: GlassboxClient,
  params: Pick<OpenChallengeParameters, 'receipt' | 'signature' | 'batchId' | 'proof'>,
): Promise<TxResult & { slashed: bigint; reward: bigint }> {
  const tx = await sendTo(client, 'disputeManager', 'reportUnadmittedRuntime', [
    params.receipt,
    params.signature ?? '0x',
    params.batchId ?? 0n,
    params.proof ?? [],
  ]);
  const [event] = eventsOf(ABIS.disputeManager, 'UnadmittedRuntimeSlashed', tx.receipt.logs);
  return { ...tx, slashed: event?.slashed ?? 0n, reward: event?.reward ?? 0n };
}

/**
 * Why opening an availability challenge (`challengeAvailability`, `challengeBatch`) fails.
 * `AlreadyChallenged` carries the earlier challenge of the receipt or batch: `[hash, challengeId]`.
 */
export type DataChallengeErrorType =
  | ContractRevertErrorType<
      'AlreadyChallenged' | 'SelfChallenge' | 'UnknownProvider' | 'NotCommitted' | 'ChallengeWindowOver'
    >
  | BondErrorType
  | ChainCallErrorType;

/**
 * Challenges a provider to publish a committed receipt (by struct hash, with its inclusion proof
 * in batch `batchId`) and its inputs within the answer period; unanswered, it is slashed.
 */
export function challengeAvailability(
  client: GlassboxClient,
  params: { provider: Address; batchId: bigint; receiptHash: Hex; proof: readonly Hex[] },
): Promise<TxResult & { challengeId: bigint; answerDeadlineMs: number }> {
  return openDataChallenge(client, 'AvailabilityChallenged', (held) =>
    sendTo(held, 'disputeManager', 'challengeAvailability', [
      params.provider,
      params.batchId,
      params.receiptHash,
      params.proof,
    ]),
  );
}

/** Posts the bond and opens a data-availability challenge with `open`; returns its id and answer deadline. */
async function openDataChallenge(
  client: GlassboxClient,
  eventName: 'AvailabilityChallenged' | 'BatchChallenged',
  open: (held: GlassboxClient) => Promise<TxResult>,
): Promise<TxResult & { challengeId: bigint; answerDeadlineMs: number }> {
  const tx = await withAllowance(client, 'disputeManager', client.deployment.params.challengeBond, open);
  const [event] = eventsOf(ABIS.disputeManager, eventName, tx.receipt.logs);
  return { ...tx, challengeId: event!.id, answerDeadlineMs: secondsToMs(event!.answerDeadline) };
}

/** An answer to a challenge that is not an open availability challenge of this receipt, or too late. */
type AnswerRevertName = NotOpenRevertName | 'NotAvailabilityChallenge' | 'AnswerClosed' | 'ReceiptMismatch';

export type AnswerAvailabilityErrorType =
  ContractRevertErrorType<AnswerRevertName | 'InputsMismatch' | 'OutputsMismatch'> | ChainCallErrorType;

/**
 * Publishes the receipt, inputs and outputs an availability challenge names, settling it for the
 * provider (the challenger's bond is refunded). Each must be at most one chunk (hashed whole);
 * larger data goes chunk by chunk (`answerAvailabilityChunk`).
 */
export function answerAvailability(
  client: GlassboxClient,
  params: { challengeId: bigint; receipt: Receipt; inputs: Uint8Array; outputs: Uint8Array },
): Promise<TxResult> {
  return sendTo(client, 'disputeManager', 'answerAvailability', [
    params.challengeId,
    params.receipt,
    bytesToHex(params.inputs),
    bytesToHex(params.outputs),
  ]);
}

/** Which side of a receipt's data a chunk belongs to. */
export type DataSide = 'inputs' | 'outputs';

/**
 * Why `answerAvailabilityChunk` fails: `ChunkAlreadyPublished` (`[outputs, index]`) means the
 * chunk is on chain already, whoever sent it.
 */
export type AnswerAvailabilityChunkErrorType =
  ContractRevertErrorType<AnswerRevertName | 'ChunkMismatch' | 'ChunkAlreadyPublished'> | ChainCallErrorType;

/**
 * Publishes one chunk of the inputs or outputs of the receipt an availability challenge names
 * (`chunkData(bytes).chunk(i)`, src/protocol/data.ts); the chunk that completes both sides
 * settles the challenge for the provider. Reverts `ChunkMismatch` for a chunk that is not the
 * receipt's, `ChunkAlreadyPublished` for one already on chain.
 */
export function answerAvailabilityChunk(
  client: GlassboxClient,
  params: { challengeId: bigint; receipt: Receipt; side: DataSide; chunk: DataChunk },
): Promise<TxResult> {
  const { length, root, index, data, proof } = params.chunk;
  return sendTo(client, 'disputeManager', 'answerAvailabilityChunk', [
    params.challengeId,
    params.receipt,
    {
      outputs: params.side === 'outputs',
      length: BigInt(length),
      root,
      index,
      data: bytesToHex(data),
      proof,
    },
  ]);
}

/** The chunks of one side published so far: bit i of `bits` is chunk i; `count` is 0 until one is. */
export type ChunkProgress = { readonly count: number; readonly bits: bigint };

/** Which chunks of an availability challenge's inputs and outputs are on chain. */
export async function getPublishedChunks(
  client: GlassboxClient,
  challengeId: bigint,
): Promise<Record<DataSide, ChunkProgress>> {
  const [inputs, outputs, inputCount, outputCount] = await readFrom(
    client,
    'disputeManager',
    'publishedChunks',
    [challengeId],
  );
  return { inputs: { count: inputCount, bits: inputs }, outputs: { count: outputCount, bits: outputs } };
}

/** Whether chunk `index` is in `progress`. */
export const isChunkPublished = (progress: ChunkProgress, index: number): boolean =>
  ((progress.bits >> BigInt(index)) & 1n) === 1n;

/** What an answered availability challenge put on chain: the receipt and its data. */
export type PublishedData = { receipt: Receipt; inputs: Uint8Array; outputs: Uint8Array };

/** Chunks read per request: 32 of 64 KiB are 4 MiB of hex, within an RPC client's response cap. */
const CHUNKS_PER_READ = 32;

/**
 * The receipt, inputs and outputs an availability challenge's answer published, in one
 * transaction (AvailabilityAnswered) or chunk by chunk (AvailabilityChunk events, then
 * AvailabilityAnsweredInChunks); undefined while it is not answered. Chunks are read a few at a
 * time, rebuilt and checked against the receipt's hashes (DATA_INVALID otherwise: the contract
 * checked each one).
 */
export async function getPublishedData(
  client: GlassboxClient,
  challengeId: bigint,
): Promise<PublishedData | undefined> {
  const byId = { contract: 'disputeManager', args: { id: challengeId } } as const;
  const [whole] = await getEvents(client, {
    ...byId,
    eventName: 'AvailabilityAnswered',
  });
  if (whole) {
    const { receipt, inputs, outputs } = whole.args;
    return { receipt, inputs: hexToBytes(inputs), outputs: hexToBytes(outputs) };
  }
  const [done] = await getEvents(client, {
    ...byId,
    eventName: 'AvailabilityAnsweredInChunks',
  });
  if (!done) return undefined;
  const counts = await getPublishedChunks(client, challengeId);
  const side = async (outputs: boolean) => {
    const chunks: { index: number; data: Uint8Array }[] = [];
    const count = counts[outputs ? 'outputs' : 'inputs'].count;
    for (let from = 0; from < count; from += CHUNKS_PER_READ) {
      const index = Array.from({ length: Math.min(CHUNKS_PER_READ, count - from) }, (_, i) => from + i);
      for (const e of await getEvents(client, {
        contract: 'disputeManager',
        eventName: 'AvailabilityChunk',
        args: { id: challengeId, outputs, index },
      }))
        chunks.push({ index: e.args.index, data: hexToBytes(e.args.data) });
    }
    return chunks;
  };
  const { receipt } = done.args;
  return {
    receipt,
    inputs: joinChunks(receipt.inputHash, await side(false)),
    outputs: joinChunks(receipt.outputHash, await side(true)),
  };
}

/**
 * Challenges the provider of batch `batchId` to publish the batch's receipt hashes (in order,
 * rebuilding the committed root) within the answer period; unanswered, it is slashed.
 */
export function challengeBatch(
  client: GlassboxClient,
  batchId: bigint,
): Promise<TxResult & { challengeId: bigint; answerDeadlineMs: number }> {
  return openDataChallenge(client, 'BatchChallenged', (held) =>
    sendTo(held, 'disputeManager', 'challengeBatch', [batchId]),
  );
}

export type AnswerBatchErrorType =
  | ContractRevertErrorType<NotOpenRevertName | 'NotAvailabilityChallenge' | 'AnswerClosed' | 'BatchMismatch'>
  | ChainCallErrorType;

/** Publishes a challenged batch's receipt struct hashes, in batch order, settling it for the provider. */
export function answerBatch(
  client: GlassboxClient,
  params: { challengeId: bigint; batchId: bigint; receiptHashes: readonly Hex[] },
): Promise<TxResult> {
  return sendTo(client, 'disputeManager', 'answerBatch', [
    params.challengeId,
    params.batchId,
    params.receiptHashes,
  ]);
}

/** The commitment a member submits (matches DisputeManager.voteCommitment). */
export function voteCommitment(params: {
  challengeId: bigint;
  member: Address;
  guilty: boolean;
  salt: Hex;
}): Hex {
  return keccak256(
    encodeAbiParameters(
      [{ type: 'uint256' }, { type: 'address' }, { type: 'bool' }, { type: 'bytes32' }],
      [params.challengeId, params.member, params.guilty, params.salt],
    ),
  );
}

export type VoteParameters = { readonly challengeId: bigint; readonly guilty: boolean; readonly salt: Hex };

export type CommitVoteErrorType =
  | ContractRevertErrorType<
      NotOpenWrongRevertName | 'NotCommitteeMember' | 'CommitClosed' | 'AlreadyVoted' | 'ZeroCommitment'
    >
  | ChainCallErrorType;

export type RevealVoteErrorType =
  | ContractRevertErrorType<
      | NotOpenWrongRevertName
      | 'RevealNotOpen'
      | 'RevealClosed'
      | 'NoCommitment'
      | 'AlreadyRevealed'
      | 'CommitmentMismatch'
    >
  | ChainCallErrorType;

/** Commits a hidden vote; keep `guilty` and `salt` to reveal it. */
export function commitVote(client: GlassboxClient, params: VoteParameters): Promise<TxResult> {
  const member = accountOf(client).address;
  return sendTo(client, 'disputeManager', 'commitVote', [
    params.challengeId,
    voteCommitment({ ...params, member }),
  ]);
}

export function revealVote(client: GlassboxClient, params: VoteParameters): Promise<TxResult> {
  return sendTo(client, 'disputeManager', 'revealVote', [params.challengeId, params.guilty, params.salt]);
}

/**
 * Our names of DisputeManager's `Status` members, checked against the enum the compiler read from
 * the contract (src/chain/artifacts): a member added, renamed or removed there fails to compile
 * here, and the order (the uint8 on chain) is the contract's. `answered`: an availability
 * challenge the provider answered on chain (the bond is refunded).
 */
const STATUS_NAMES = {
  None: 'none',
  Open: 'open',
  Upheld: 'upheld',
  Rejected: 'rejected',
  Void: 'void',
  Answered: 'answered',
} as const satisfies Record<(typeof DisputeManagerEnums.Status)[number], string>;
export const CHALLENGE_STATUS = DisputeManagerEnums.Status.map((member) => STATUS_NAMES[member]);
export type ChallengeStatus = (typeof STATUS_NAMES)[keyof typeof STATUS_NAMES];

export type ResolveChallengeErrorType =
  ContractRevertErrorType<'UnknownChallenge' | 'ChallengeNotOpen' | 'TooEarly'> | ChainCallErrorType;

/** Settles a challenge after its reveal deadline (or once all revealed); anyone may call. */
export async function resolveChallenge(
  client: GlassboxClient,
  challengeId: bigint,
): Promise<TxResult & { status: ChallengeStatus; slashed: bigint; reward: bigint }> {
  const tx = await sendTo(client, 'disputeManager', 'resolve', [challengeId]);
  const [event] = eventsOf(ABIS.disputeManager, 'ChallengeResolved', tx.receipt.logs);
  return { ...tx, status: CHALLENGE_STATUS[event!.status]!, slashed: event!.slashed, reward: event!.reward };
}

/** Our names of DisputeManager's `Kind` members, checked against the contract's enum as for `Status`. */
const KIND_NAMES = {
  Wrong: 'wrong',
  Unavailable: 'unavailable',
  UnavailableBatch: 'unavailable-batch',
} as const satisfies Record<(typeof DisputeManagerEnums.Kind)[number], string>;
export const CHALLENGE_KIND = DisputeManagerEnums.Kind.map((member) => KIND_NAMES[member]);
export type ChallengeKind = (typeof KIND_NAMES)[keyof typeof KIND_NAMES];

export type ChallengeInfo = {
  readonly challengeId: bigint;
  readonly challenger: Address;
  readonly provider: Address;
  /**
   * `wrong`: a committee votes; `unavailable`: the provider must publish a receipt and its inputs
   * in time; `unavailable-batch`: it must publish a batch's receipt hashes in time.
   */
  readonly kind: ChallengeKind;
  readonly status: ChallengeStatus;
  /** The first divergent trace step, when the challenge proved one. */
  readonly divergence: { step: number; providerHash: Hex; challengerHash: Hex } | undefined;
  /** A token challenge's claim (what fails in the generation, and where), when it is one. */
  readonly token: TokenClaim | undefined;
  /** `wrong` only: the challenged receipt's runtime profile (members are drawn among its voters). */
  readonly runtime: Hex;
  /** `wrong` only: the block whose hash seeds the committee; drawable once a later block exists. */
  readonly drawBlock: bigint;
  /** For `unavailable`, commit and reveal deadlines are both the answer deadline. */
  readonly commitDeadlineMs: number;
  readonly revealDeadlineMs: number;
  readonly committed: number;
  readonly revealed: number;
  readonly guilty: number;
  readonly innocent: number;
  readonly receiptHash: Hex;
  readonly bond: bigint;
  /** Empty until `drawCommittee`. */
  readonly committee: readonly Address[];
};

export async function getChallenge(client: GlassboxClient, challengeId: bigint): Promise<ChallengeInfo> {
  const c = await readFrom(client, 'disputeManager', 'getChallenge', [challengeId]);
  const { kind, traced, step, providerStepHash, challengerStepHash, tokenCheck, tokenPosition, ...rest } = c;
  const check = TOKEN_CHECK[tokenCheck]!;
  return {
    ...rest,
    challengeId,
    kind: CHALLENGE_KIND[kind]!,
    divergence: traced
      ? { step: Number(step), providerHash: providerStepHash, challengerHash: challengerStepHash }
      : undefined,
    token: check === 'none' ? undefined : { position: tokenPosition, check },
    status: CHALLENGE_STATUS[c.status]!,
    drawBlock: BigInt(c.drawBlock),
    commitDeadlineMs: secondsToMs(c.commitDeadline),
    revealDeadlineMs: secondsToMs(c.revealDeadline),
  };
}

export function getChallengeCount(client: GlassboxClient): Promise<bigint> {
  return readFrom(client, 'disputeManager', 'challengeCount');
}

export function getVote(
  client: GlassboxClient,
  params: { challengeId: bigint; member: Address },
): Promise<{ commitment: Hex; committed: boolean; revealed: boolean; guilty: boolean }> {
  return readFrom(client, 'disputeManager', 'getVote', [params.challengeId, params.member]);
}

/**
 * The latest challenge of a receipt (`wrong`: by receipt struct hash), of a receipt's availability
 * (`unavailable`: by receipt struct hash) or of a batch's (`unavailable-batch`: by batch id).
 */
export async function findChallenge(
  client: GlassboxClient,
  params:
    { kind: 'wrong' | 'unavailable'; receiptHash: Hex } | { kind: 'unavailable-batch'; batchId: bigint },
): Promise<bigint | undefined> {
  const idPlusOne = await (params.kind === 'unavailable-batch'
    ? readFrom(client, 'disputeManager', 'batchChallengeOf', [params.batchId])
    : readFrom(
        client,
        'disputeManager',
        params.kind === 'wrong' ? 'challengeOfReceipt' : 'availabilityChallengeOf',
        [params.receiptHash],
      ));
  return idPlusOne === 0n ? undefined : idPlusOne - 1n;
}
