import { keccak256, toHex, type Hex } from 'viem';
import type { StoredReceipt } from '../../src/protocol/api.js';
import { isGlassboxError, type GlassboxError } from '../../src/protocol/errors.js';

/** Fixtures of what providers answer, and a catcher for the errors their readers throw. */

export const PROVIDER = '0x70997970C51812dc3A010C7d01b50e0d17dc79C8';
export const h = (s: string): Hex => keccak256(toHex(s));

/** The i-th stored receipt of a listing: well-formed, with a signature nobody checks here. */
export const storedReceipt = (i: number, extra: Partial<StoredReceipt> = {}): StoredReceipt => ({
  receipt: {
    receipt: {
      requestId: h(`r${i}`),
      provider: PROVIDER,
      client: '0x000000000000000000000000000000000000c11e',
      model: h('model'),
      inputHash: h('in'),
      outputHash: h('out'),
      paramsHash: `0x${'0'.repeat(64)}`,
      runtime: h('runtime'),
      traceRoot: `0x${'0'.repeat(64)}`,
      price: '1000',
      timestamp: '1700000000000',
    },
    signature: `0x${'11'.repeat(65)}`,
  },
  inputs: Buffer.from('inputs').toString('base64'),
  ...extra,
});

/** The GlassboxError a promise rejects with; anything else (a resolve included) fails the test. */
export async function failure(promise: Promise<unknown>): Promise<GlassboxError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isGlassboxError(error)) throw new Error(`expected a GlassboxError, got ${String(error)}`);
  return error;
}
