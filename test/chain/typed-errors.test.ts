import { keccak256, type Hex } from 'viem';
import { describe, expect, expectTypeOf, it } from 'vitest';
import {
  challengeAvailability,
  commitBatch,
  ContractRevertError,
  getChallenge,
  getEvents,
  isContractRevert,
  readFrom,
  registerModel,
  registerProvider,
  sendTo,
  UnknownRevertError,
  type DataChallengeErrorType,
} from '../../src/chain/index.js';
import { isGlassboxError } from '../../src/protocol/errors.js';
import { batchTree } from '../../src/protocol/merkle.js';
import { modelDigest } from '../../src/protocol/manifest.js';
import { receiptHash } from '../../src/protocol/receipt.js';
import { E18, h, makeReceipt, modelOf, TEST_PARAMS, useTestChain } from './support.js';

/*
 * Reverts surface as errors typed per cause: the custom error decoded through the ABI, with its
 * arguments, so callers branch on `isContractRevert(error, 'AlreadyChallenged')` and read
 * `error.args`, never on a revert name in a string. The `@ts-expect-error` lines are checked by
 * `tsc --noEmit` (npm run lint): each must stay a compile error, or the build fails.
 */

const chain = useTestChain(TEST_PARAMS, 4);
const PROVIDER = 1;
const CHALLENGER = 2;

/** A committed receipt of the provider's, with what an availability challenge of it needs. */
async function committedReceipt() {
  const model = modelDigest(modelOf('typed-errors'));
  await registerModel(chain().as(0), { model, exact: true });
  await registerProvider(chain().as(PROVIDER), {
    endpoint: 'http://p',
    signer: chain().address(PROVIDER),
    stake: 200n * E18,
  });
  const receipt = makeReceipt({ provider: chain().address(PROVIDER), model, inputHash: keccak256('0x01') });
  const tree = batchTree([receiptHash(receipt), h('another receipt')]);
  const { batchId } = await commitBatch(chain().as(PROVIDER), { root: tree.root, count: 2, uri: 'http://p' });
  return {
    provider: chain().address(PROVIDER),
    batchId,
    receiptHash: receiptHash(receipt),
    proof: tree.proof(0),
  };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => expect.unreachable('expected a revert'),
    (error: unknown) => error,
  );
}

describe('typed chain errors', () => {
  it('challenging a receipt twice is the typed AlreadyChallenged error, naming the first challenge', async () => {
    const evidence = await committedReceipt();
    const { challengeId } = await challengeAvailability(chain().as(CHALLENGER), evidence);
    const error = await rejection(challengeAvailability(chain().as(CHALLENGER), evidence));

    expect(error).toBeInstanceOf(ContractRevertError);
    if (!isContractRevert(error, 'AlreadyChallenged')) throw error;
    expectTypeOf(error.args[0]).toEqualTypeOf<Hex>();
    expectTypeOf(error.args[1]).toEqualTypeOf<bigint>();
    const [hash, blocking] = error.args;
    expect(hash).toBe(evidence.receiptHash);
    expect(blocking).toBe(challengeId);
    expect((await getChallenge(chain().as(0), blocking)).status).toBe('open');
    // what crosses HTTP and the CLI is unchanged: the code, and the name and args as JSON
    expect(isGlassboxError(error, 'CHAIN_REVERTED')).toBe(true);
    expect(error.details).toMatchObject({
      error: 'AlreadyChallenged',
      args: [evidence.receiptHash, challengeId.toString()],
      call: 'challengeAvailability',
    });
    // another cause does not match
    expect(isContractRevert(error, 'SelfChallenge')).toBe(false);
  });

  it('each cause is its own error: SelfChallenge and NotCommitted are told apart by type, not by text', async () => {
    const evidence = await committedReceipt();
    const causes: DataChallengeErrorType[] = [];
    for (const attempt of [
      () => challengeAvailability(chain().as(PROVIDER), evidence),
      () => challengeAvailability(chain().as(CHALLENGER), { ...evidence, receiptHash: h('never committed') }),
    ])
      causes.push((await rejection(attempt())) as DataChallengeErrorType);
    expect(causes.map((e) => e instanceof ContractRevertError && e.errorName)).toEqual([
      'SelfChallenge',
      'NotCommitted',
    ]);
  });

  it('a revert of the token pulled in by a DisputeManager call decodes through the token ABI', async () => {
    const evidence = await committedReceipt();
    // account 3 holds no tokens: the bond transfer reverts inside the DevToken
    const poor = chain().as(3);
    await sendTo(poor, 'token', 'transfer', [
      chain().address(0),
      await readFrom(poor, 'token', 'balanceOf', [chain().address(3)]),
    ]);
    const error = await rejection(challengeAvailability(poor, evidence));
    if (!isContractRevert(error, 'ERC20InsufficientBalance')) throw error;
    expect(error.args[0]).toBe(chain().address(3));
    expect(error.args[2]).toBe(TEST_PARAMS.challengeBond);
  });

  it('a revert without a custom error of ours is an UnknownRevertError, still CHAIN_REVERTED', async () => {
    // DisputeManager's challengeCount() sent to the token, which has no such function (nor a
    // fallback): it reverts with no data, so there is no custom error to decode
    const { contracts } = chain().deployment;
    const client = {
      ...chain().as(0),
      deployment: { ...chain().deployment, contracts: { ...contracts, disputeManager: contracts.token } },
    };
    const error = await rejection(readFrom(client, 'disputeManager', 'challengeCount'));
    expect(error).toBeInstanceOf(UnknownRevertError);
    expect(error).not.toBeInstanceOf(ContractRevertError);
    expect(isGlassboxError(error, 'CHAIN_REVERTED')).toBe(true);
    expect((error as UnknownRevertError).details.call).toBe('challengeCount');
  });

  it('calls, events and error names are typed by the ABIs (checked by tsc)', () => {
    const client = chain().as(0);
    // compile-time only: none of these calls runs
    const typeChecks = () => {
      // @ts-expect-error: DisputeManager has no function `resolv`
      void sendTo(client, 'disputeManager', 'resolv', [1n]);
      // @ts-expect-error: resolve takes a uint256, not a string
      void sendTo(client, 'disputeManager', 'resolve', ['1']);
      // @ts-expect-error: getChallenge is a view; it cannot be sent
      void sendTo(client, 'disputeManager', 'getChallenge', [1n]);
      // @ts-expect-error: a read of a function that does not exist
      void readFrom(client, 'receiptLedger', 'batchCounts');
      // @ts-expect-error: no such event on the ReceiptLedger
      void getEvents(client, { contract: 'receiptLedger', eventName: 'ChallengeOpened' });
      // @ts-expect-error: no contract of ours has a custom error `AlreadyChalenged`
      isContractRevert(new Error(), 'AlreadyChalenged');
    };
    // results are typed by the ABI, with no struct written out by hand
    const readChecks = async () => {
      const challenge = await readFrom(client, 'disputeManager', 'getChallenge', [0n]);
      expectTypeOf(challenge.bond).toEqualTypeOf<bigint>();
      expectTypeOf(challenge.committee).toEqualTypeOf<readonly Hex[]>();
      const [opened] = await getEvents(client, { contract: 'disputeManager', eventName: 'ChallengeOpened' });
      expectTypeOf(opened!.args.drawBlock).toEqualTypeOf<bigint>();
    };
    expect(readChecks).toBeTypeOf('function');
    expect(typeChecks).toBeTypeOf('function');
  });
});
