import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getDeposit, getRedeemed, requestWithdrawal, withdrawDeposit } from '../../src/chain/index.js';
import type { GlassboxNode } from '../../src/node/index.js';
import {
  CLIENT,
  inferBody,
  post,
  PRICE,
  PROVIDER,
  startTestChain,
  startTestNode,
  stopAll,
  tempDir,
  testClient,
  TEST_PARAMS,
  type TestChain,
} from './support.js';

/*
 * Audit H-2: a client served on vouchers that looked funded asked to withdraw its deposit, and the
 * node (which did not redeem while a hold ran, and counted the whole deposit as backing) kept
 * serving until the client withdrew; the provider's next redemption got nothing. Now a pending
 * withdrawal backs nothing, and every redemption pass redeems every channel with something owed.
 */

const WITHDRAWAL_DELAY_MS = 60_000;

let chain: TestChain;
let node: GlassboxNode;
const dirs: { dir: string; remove(): Promise<void> }[] = [];

beforeAll(async () => {
  chain = await startTestChain({ ...TEST_PARAMS, withdrawalDelayMs: WITHDRAWAL_DELAY_MS });
  dirs.push(await tempDir());
  // A large credit limit, so that only the deposit bounds what is served; the escrow read anew
  // for every request, so the test need not wait out the cache.
  node = await startTestNode(chain, PROVIDER[0], dirs[0]!.dir, {
    creditLimit: (1000n * PRICE).toString(),
    escrowCacheMs: 0,
  });
});

afterAll(async () => {
  await stopAll([node]);
  await chain?.stop();
  for (const d of dirs) await d.remove();
});

type Problem = { code: string; message: string; field?: string };

describe('H-2 withdrawal while served: the provider is paid for every answer', () => {
  it('serves no more once the deposit is being withdrawn, redeems at once, and the client gets only what it did not owe', async () => {
    const c = testClient(chain, CLIENT[0]);
    const deposit = 10n * PRICE;
    await c.deposit(deposit);
    const pkg = [...node.models.values()][1]!;
    let delivered = 0n;
    /** One request carrying the voucher for everything delivered so far (what the SDK does). */
    const ask = async () => {
      const voucher = delivered > 0n ? { voucher: await c.voucherJson(node.address, delivered) } : {};
      const res = await post(`${node.url}/v1/infer`, await inferBody(node, pkg, c.key, voucher));
      if (res.status === 200) delivered += PRICE;
      return { status: res.status, body: (await res.json()) as Problem };
    };
    const settle = async () =>
      expect(
        (await post(`${node.url}/v1/vouchers`, await c.voucherJson(node.address, delivered))).status,
      ).toBe(200);

    for (let i = 0; i < 3; i++) expect((await ask()).status).toBe(200);
    await settle();
    expect(await node.redeemVouchers()).toBe(3n * PRICE);
    // (The escrow holds that redemption for its hold period, an hour here: it is still held below.)

    for (let i = 0; i < 3; i++) expect((await ask()).status).toBe(200);
    await settle();

    // The client asks to withdraw everything left in the escrow.
    const left = await getDeposit(chain.as(0), c.address);
    expect(left).toBe(deposit - 3n * PRICE);
    await requestWithdrawal(chain.as(CLIENT[0]), left);
    // A deposit on its way out backs nothing: no more answers.
    const refused = await ask();
    expect(refused.status).toBe(402);
    expect(refused.body).toMatchObject({ code: 'PAYMENT_REQUIRED', field: 'client' });

    // The redeemer redeems what is owed although the first hold still runs.
    expect(await node.redeemVouchers()).toBe(3n * PRICE);
    await chain.increaseTime(WITHDRAWAL_DELAY_MS);
    const withdrawn = await withdrawDeposit(chain.as(CLIENT[0]));
    expect(withdrawn.amount).toBe(deposit - delivered);
    // Every answer is paid for: what the provider redeemed is what it delivered.
    expect(delivered).toBe(6n * PRICE);
    expect(await getRedeemed(chain.as(0), { client: c.address, provider: node.address })).toBe(delivered);
    expect(node.db.getAccount(c.address).delivered).toBe(delivered);
  });

  it('with a partial withdrawal the node serves only what the rest of the deposit backs', async () => {
    const c = testClient(chain, CLIENT[1]);
    await c.deposit(10n * PRICE);
    await requestWithdrawal(chain.as(CLIENT[1]), 8n * PRICE);
    const pkg = [...node.models.values()][1]!;
    const statuses = [];
    for (let i = 0; i < 3; i++)
      statuses.push((await post(`${node.url}/v1/infer`, await inferBody(node, pkg, c.key))).status);
    expect(statuses).toEqual([200, 200, 402]);
  });

  it('refuses to start with a redemption interval not below half the withdrawal delay', async () => {
    const dir = await tempDir();
    dirs.push(dir);
    await expect(
      startTestNode(chain, PROVIDER[1], dir.dir, { redeemIntervalMs: WITHDRAWAL_DELAY_MS / 2 }),
    ).rejects.toMatchObject({ code: 'CONFIG_INVALID', field: 'redeemIntervalMs' });
    const ok = await startTestNode(chain, PROVIDER[1], dir.dir, {
      redeemIntervalMs: WITHDRAWAL_DELAY_MS / 2 - 1000,
    });
    await ok.stop();
  });
});
