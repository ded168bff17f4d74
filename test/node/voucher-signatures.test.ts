import type { Hex } from 'viem';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getRedeemed, redeemVoucher } from '../../src/chain/index.js';
import type { GlassboxNode } from '../../src/node/index.js';
import { voucherToJson } from '../../src/protocol/api.js';
import type { GlassboxError } from '../../src/protocol/errors.js';
import type { SignedVoucher } from '../../src/protocol/voucher.js';
import {
  CLIENT,
  inferBody,
  nonCanonical,
  post,
  PRICE,
  PROVIDER,
  startTestChain,
  startTestNode,
  stopAll,
  tempDir,
  testClient,
  type TestChain,
} from './support.js';

/*
 * Audit H-1: vouchers signed with v = 0/1 or with a high s recover to their client off chain, but
 * the escrow refuses them. A node that took them served answers it could never be paid for, and its
 * redeemer stopped at the first such voucher, leaving every later client unredeemed.
 */

let chain: TestChain;
let node: GlassboxNode;
let other: GlassboxNode;
const dirs: { dir: string; remove(): Promise<void> }[] = [];

beforeAll(async () => {
  chain = await startTestChain();
  for (let i = 0; i < 2; i++) dirs.push(await tempDir());
  node = await startTestNode(chain, PROVIDER[0], dirs[0]!.dir, { creditLimit: (2n * PRICE).toString() });
  other = await startTestNode(chain, PROVIDER[1], dirs[1]!.dir, { creditLimit: (2n * PRICE).toString() });
});

afterAll(async () => {
  await stopAll([node, other]);
  await chain?.stop();
  for (const d of dirs) await d.remove();
});

type Problem = { code: string; message: string; field?: string };

const mangled = (signed: SignedVoucher): [string, SignedVoucher][] => {
  const { parity, highS } = nonCanonical(signed.signature);
  return [
    ['v 0/1', { ...signed, signature: parity }],
    ['high s', { ...signed, signature: highS }],
  ];
};

async function infer(n: GlassboxNode, key: Hex, over: Record<string, unknown> = {}) {
  const res = await post(`${n.url}/v1/infer`, await inferBody(n, [...n.models.values()][1]!, key, over));
  return { status: res.status, body: (await res.json()) as Problem };
}

describe('H-1 non-canonical voucher signatures', () => {
  it('are refused with 400 SIGNATURE_INVALID naming voucher.signature, and buy no answer', async () => {
    const c = testClient(chain, CLIENT[0]);
    await c.deposit(100n * PRICE);
    expect((await infer(node, c.key)).status).toBe(200);
    expect((await infer(node, c.key)).status).toBe(200);
    const owed = await c.voucher(node.address, 2n * PRICE);
    for (const [kind, bad] of mangled(owed)) {
      const withRequest = await infer(node, c.key, { voucher: voucherToJson(bad) });
      expect(withRequest.status, kind).toBe(400);
      expect(withRequest.body, kind).toMatchObject({ code: 'SIGNATURE_INVALID', field: 'voucher.signature' });
      expect(withRequest.body.message, kind).toContain('not canonical');
      const alone = await post(`${node.url}/v1/vouchers`, voucherToJson(bad));
      expect(alone.status, kind).toBe(400);
      expect((await alone.json()) as Problem, kind).toMatchObject({
        code: 'SIGNATURE_INVALID',
        field: 'voucher.signature',
      });
    }
    // No answer was served on them, none was kept, and the client is still owing.
    expect(node.db.getAccount(c.address)).toMatchObject({ delivered: 2n * PRICE, voucher: undefined });
    expect((await infer(node, c.key)).body.code).toBe('PAYMENT_REQUIRED');
    // The canonical voucher for the same amount is taken.
    expect((await infer(node, c.key, { voucher: voucherToJson(owed) })).status).toBe(200);
  });

  it("one stored before this check does not stop the redeemer: the honest client's voucher is redeemed", async () => {
    // Two funded clients whose non-canonical vouchers got into the database first (as before
    // nodes refused them): one with a high s, one with v 0/1.
    const [first, second] = [testClient(chain, CLIENT[1]), testClient(chain, CLIENT[2])];
    const a = await first.voucher(other.address, PRICE);
    const b = await second.voucher(other.address, PRICE);
    other.db.offerVoucher({ ...a, signature: nonCanonical(a.signature).highS });
    other.db.offerVoucher({ ...b, signature: nonCanonical(b.signature).parity });
    expect(other.db.unredeemed().map((x) => x.client)).toEqual([first.address, second.address]);
    await first.deposit(100n * PRICE);
    await second.deposit(100n * PRICE);

    const honest = testClient(chain, CLIENT[3]);
    await honest.deposit(100n * PRICE);
    expect((await infer(other, honest.key)).status).toBe(200);
    expect((await infer(other, honest.key)).status).toBe(200);
    const res = await post(`${other.url}/v1/vouchers`, await honest.voucherJson(other.address, 2n * PRICE));
    expect(res.status).toBe(200);

    // Each failing channel is skipped with its reason; the pass goes on and pays the honest one.
    expect(await other.redeemVouchers()).toBe(2n * PRICE);
    const redeemed = (i: number) =>
      getRedeemed(chain.as(0), { client: chain.address(i), provider: other.address });
    expect(await redeemed(CLIENT[3])).toBe(2n * PRICE);
    expect(await redeemed(CLIENT[1])).toBe(0n);
    expect(await redeemed(CLIENT[2])).toBe(0n);
    expect(other.db.getAccount(honest.address).redeemed).toBe(2n * PRICE);
    // and the next pass does not fail either
    expect(await other.redeemVouchers()).toBe(0n);
    // What the escrow says of the stored ones (what the redeemer logged and skipped):
    const reasons = [];
    for (const x of [first, second]) {
      const stored = other.db.getAccount(x.address).voucher!;
      const error = await redeemVoucher(chain.as(PROVIDER[1]), stored).catch((e: unknown) => e);
      reasons.push((error as GlassboxError).details.error);
    }
    expect(reasons).toEqual(['ECDSAInvalidSignatureS', 'ECDSAInvalidSignature']);
  });
});
