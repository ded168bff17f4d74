import { getAddress, type Hex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getHold, getRedeemed, getTokenBalance } from '../../src/chain/index.js';
import type { GlassboxNode } from '../../src/node/index.js';
import { voucherToJson, type VoucherAccepted } from '../../src/protocol/api.js';
import { signVoucher } from '../../src/protocol/voucher.js';
import {
  CLIENT,
  HOLD_DUE_MS,
  inferBody,
  post,
  PRICE,
  PROVIDER,
  startTestChain,
  startTestNode,
  tempDir,
  testClient,
  type TestChain,
} from './support.js';

let chain: TestChain;
let node: GlassboxNode;
let dataDir: { dir: string; remove(): Promise<void> };

beforeAll(async () => {
  chain = await startTestChain();
  dataDir = await tempDir();
  node = await startTestNode(chain, PROVIDER[2], dataDir.dir, { creditLimit: (2n * PRICE).toString() });
});

afterAll(async () => {
  await node?.stop();
  await chain?.stop();
  await dataDir?.remove();
});

type Problem = { code: string; message: string; field?: string; details?: Record<string, string> };

const model = () => [...node.models.values()][1]!; // iris-int8

/** A request signed by the client whose key is `key`. */
async function infer(key: Hex, over: Record<string, unknown> = {}) {
  const res = await post(`${node.url}/v1/infer`, await inferBody(node, model(), key, over));
  return { status: res.status, type: res.headers.get('content-type'), body: (await res.json()) as Problem };
}

describe('provider node: payment', () => {
  it('serves within the credit limit without a voucher, then answers 402 with what is owed', async () => {
    const c = testClient(chain, CLIENT[0]);
    await c.deposit(100n * PRICE);
    expect((await infer(c.key)).status).toBe(200);
    expect((await infer(c.key)).status).toBe(200);
    const refused = await infer(c.key);
    expect(refused.status).toBe(402);
    expect(refused.type).toContain('application/problem+json');
    expect(refused.body.code).toBe('PAYMENT_REQUIRED');
    expect(refused.body.details?.owed).toBe((2n * PRICE).toString());

    // A voucher for what was delivered opens the credit again.
    const ok = await infer(c.key, { voucher: await c.voucherJson(node.address, 2n * PRICE) });
    expect(ok.status).toBe(200);
    // Written to the database once the answer has left (not on the answer's critical path).
    expect(node.db.getAccount(c.address).voucher?.voucher.amount).toBe(2n * PRICE);
    // A stale (lower) voucher is ignored, not an error: requests race.
    expect((await infer(c.key, { voucher: await c.voucherJson(node.address, PRICE) })).status).toBe(200);
    expect((await infer(c.key)).status).toBe(402);

    // POST /v1/vouchers reports what is paid and owed.
    const res = await post(`${node.url}/v1/vouchers`, await c.voucherJson(node.address, 4n * PRICE));
    expect(res.status).toBe(200);
    expect((await res.json()) as VoucherAccepted).toEqual({ amount: (4n * PRICE).toString(), owed: '0' });
  });

  it('refuses a forged voucher, one for another provider, another client, or another chain', async () => {
    const c = testClient(chain, CLIENT[1]);
    await c.deposit(100n * PRICE);
    const mallory = privateKeyToAccount(chain.key(CLIENT[2]));
    const domain = {
      chainId: chain.anvil.chainId,
      verifyingContract: chain.deployment.contracts.paymentEscrow,
    };
    const forged = voucherToJson(
      await signVoucher(mallory, { client: c.address, provider: node.address, amount: 10n * PRICE }, domain),
    );
    let r = await infer(c.key, { voucher: forged });
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ code: 'SIGNATURE_INVALID', field: 'voucher.signature' });

    const other = await c.voucherJson(getAddress(chain.address(PROVIDER[3])), 10n * PRICE);
    r = await infer(c.key, { voucher: other });
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ code: 'VOUCHER_INVALID', field: 'voucher.voucher.provider' });

    const notMine = await testClient(chain, CLIENT[2]).voucherJson(node.address, 10n * PRICE);
    r = await infer(c.key, { voucher: notMine });
    expect(r.body).toMatchObject({ code: 'VOUCHER_INVALID', field: 'voucher.voucher.client' });

    const otherChain = voucherToJson(
      await signVoucher(
        privateKeyToAccount(c.key),
        { client: c.address, provider: node.address, amount: 10n * PRICE },
        { ...domain, chainId: domain.chainId + 1 },
      ),
    );
    r = await infer(c.key, { voucher: otherChain });
    expect(r.body.code).toBe('SIGNATURE_INVALID');

    const garbage = {
      voucher: { client: c.address, provider: node.address, amount: '1' },
      signature: '0x1234',
    };
    r = await infer(c.key, { voucher: garbage });
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('SIGNATURE_INVALID');
    // None of these bought credit, and the node still serves.
    expect((await infer(c.key)).status).toBe(200);
  });

  it('an unfunded client gets nothing, and its voucher buys nothing', async () => {
    const c = testClient(chain, CLIENT[3]); // never deposits
    const r = await infer(c.key);
    expect(r.status).toBe(402);
    expect(r.body).toMatchObject({ code: 'PAYMENT_REQUIRED', field: 'client' });
    expect(r.body.message).toContain('must deposit');
    const paying = await infer(c.key, { voucher: await c.voucherJson(node.address, 1000n * PRICE) });
    expect(paying.status).toBe(402);
    expect(paying.body.details?.deposit).toBe('0');
    expect(node.db.getAccount(c.address).delivered).toBe(0n);
  });

  it('refuses a request whose maxPrice is below the price', async () => {
    const c = testClient(chain, CLIENT[1]);
    const r = await infer(c.key, { maxPrice: (PRICE - 1n).toString() });
    expect(r.status).toBe(409);
    expect(r.body).toMatchObject({ code: 'PRICE_TOO_HIGH', field: 'maxPrice' });
  });

  it('redeems exactly the best voucher of each client on chain', async () => {
    const c = testClient(chain, CLIENT[0]);
    const balance = await getTokenBalance(chain.as(0), node.address);
    const paid = await node.redeemVouchers();
    // CLIENT[0]'s best voucher is 4 prices; CLIENT[3]'s is unfunded (nothing to pay); CLIENT[1] sent none valid.
    expect(paid).toBe(4n * PRICE);
    expect(await getRedeemed(chain.as(0), { client: c.address, provider: node.address })).toBe(4n * PRICE);
    // held by the escrow until the hold period ends; the redeemer's next pass has it paid out
    expect(await getTokenBalance(chain.as(0), node.address)).toBe(balance);
    expect((await getHold(chain.as(0), { client: c.address, provider: node.address }))!.amount).toBe(
      4n * PRICE,
    );
    await chain.increaseTime(HOLD_DUE_MS);
    // Nothing new to redeem: nothing sent, but the finished hold is released.
    expect(await node.redeemVouchers()).toBe(0n);
    expect((await getTokenBalance(chain.as(0), node.address)) - balance).toBe(4n * PRICE);
    expect(await getHold(chain.as(0), { client: c.address, provider: node.address })).toBeUndefined();
    // A higher voucher later pays only the difference, also on stop.
    await post(`${node.url}/v1/vouchers`, await c.voucherJson(node.address, 5n * PRICE));
    await node.stop();
    expect(await getRedeemed(chain.as(0), { client: c.address, provider: node.address })).toBe(5n * PRICE);
    node = await startTestNode(chain, PROVIDER[2], dataDir.dir, { creditLimit: (2n * PRICE).toString() });
  });
});
