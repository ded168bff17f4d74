import { encodeAbiParameters, keccak256, type Address, type Hex } from 'viem';
import type { Receipt, SignedReceipt } from '../protocol/receipt.js';
import { accountOf, eventsOf, secondsToMs, type GlassboxClient, type TxResult } from './client.js';
import { ABIS, readFrom, sendTo } from './contracts.js';
import { ensureAllowance } from './token.js';

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
  const [event] = eventsOf<{ slashed: bigint; reward: bigint }>(
    ABIS.disputeManager,
    'EquivocationSlashed',
    tx.receipt.logs,
  );
  return { ...tx, slashed: event?.slashed ?? 0n, reward: event?.reward ?? 0n };
}

export type OpenChallengeParameters = {
  readonly receipt: Receipt;
  /** The provider's signature over the receipt; or, instead, a batch inclusion proof. */
  readonly signature?: Hex;
  readonly batchId?: bigint;
  readonly proof?: readonly Hex[];
  /** Where the committee can fetch the receipt's inputs. */
  readonly inputsUri: string;
};

/** Opens a challenge (approving the bond first if needed); returns its id and committee. */
export async function openChallenge(
  client: GlassboxClient,
  params: OpenChallengeParameters,
): Promise<TxResult & { challengeId: bigint; committee: readonly Address[] }> {
  await ensureAllowance(client, 'disputeManager', client.deployment.params.challengeBond);
  const tx = await sendTo(client, 'disputeManager', 'openChallenge', [
    params.receipt,
    params.signature ?? '0x',
    params.batchId ?? 0n,
    params.proof ?? [],
    params.inputsUri,
  ]);
  const [event] = eventsOf<{ id: bigint; committee: readonly Address[] }>(
    ABIS.disputeManager,
    'ChallengeOpened',
    tx.receipt.logs,
  );
  return { ...tx, challengeId: event!.id, committee: event!.committee };
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

export const CHALLENGE_STATUS = ['none', 'open', 'upheld', 'rejected', 'void'] as const;
export type ChallengeStatus = (typeof CHALLENGE_STATUS)[number];

/** Settles a challenge after its reveal deadline (or once all revealed); anyone may call. */
export async function resolveChallenge(
  client: GlassboxClient,
  challengeId: bigint,
): Promise<TxResult & { status: ChallengeStatus; slashed: bigint; reward: bigint }> {
  const tx = await sendTo(client, 'disputeManager', 'resolve', [challengeId]);
  const [event] = eventsOf<{ status: number; slashed: bigint; reward: bigint }>(
    ABIS.disputeManager,
    'ChallengeResolved',
    tx.receipt.logs,
  );
  return { ...tx, status: CHALLENGE_STATUS[event!.status]!, slashed: event!.slashed, reward: event!.reward };
}

export type ChallengeInfo = {
  readonly challengeId: bigint;
  readonly challenger: Address;
  readonly provider: Address;
  readonly status: ChallengeStatus;
  readonly commitDeadlineMs: number;
  readonly revealDeadlineMs: number;
  readonly committed: number;
  readonly revealed: number;
  readonly guilty: number;
  readonly innocent: number;
  readonly receiptHash: Hex;
  readonly bond: bigint;
  readonly committee: readonly Address[];
};

export async function getChallenge(client: GlassboxClient, challengeId: bigint): Promise<ChallengeInfo> {
  const c = await readFrom<{
    challenger: Address;
    provider: Address;
    status: number;
    commitDeadline: bigint;
    revealDeadline: bigint;
    committed: number;
    revealed: number;
    guilty: number;
    innocent: number;
    receiptHash: Hex;
    bond: bigint;
    committee: readonly Address[];
  }>(client, 'disputeManager', 'getChallenge', [challengeId]);
  return {
    ...c,
    challengeId,
    status: CHALLENGE_STATUS[c.status]!,
    commitDeadlineMs: secondsToMs(c.commitDeadline),
    revealDeadlineMs: secondsToMs(c.revealDeadline),
  };
}

export function getChallengeCount(client: GlassboxClient): Promise<bigint> {
  return readFrom<bigint>(client, 'disputeManager', 'challengeCount');
}

export function getVote(
  client: GlassboxClient,
  params: { challengeId: bigint; member: Address },
): Promise<{ commitment: Hex; committed: boolean; revealed: boolean; guilty: boolean }> {
  return readFrom(client, 'disputeManager', 'getVote', [params.challengeId, params.member]);
}
