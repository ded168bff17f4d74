import type { Hex } from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GlassboxNode } from '../../src/node/index.js';
import { REQUEST_HEADER } from '../../src/protocol/api.js';
import { encodeTensors, hashTensors } from '../../src/protocol/encoding.js';
import { inputsFromJson } from '../../src/protocol/inputs.js';
import {
  CLIENT,
  inferBody,
  INT8_INPUTS,
  nonCanonical,
  post,
  postBinary,
  PRICE,
  PROVIDER,
  signBody,
  startTestChain,
  startTestNode,
  stopAll,
  tempDir,
  testClient,
  type TestChain,
} from './support.js';

/*
 * Audit H-3: the node took the client a request names as given. Anyone got credit in a fresh
 * address's name, was served on a paying client's credit until the node refused the client itself,
 * and could lock a client out by flooding requests in its name. Now every request carries the
 * client's signature (src/protocol/request.ts), credit needs a deposit, and the rate limit counts a
 * request against its client only once the signature proves it.
 */

let chain: TestChain;
let node: GlassboxNode;
let limited: GlassboxNode;
const dirs: { dir: string; remove(): Promise<void> }[] = [];
const RATE = 5;

beforeAll(async () => {
  chain = await startTestChain();
  for (let i = 0; i < 2; i++) dirs.push(await tempDir());
  node = await startTestNode(chain, PROVIDER[0], dirs[0]!.dir, { creditLimit: (2n * PRICE).toString() });
  limited = await startTestNode(chain, PROVIDER[1], dirs[1]!.dir, { rateLimit: { perMinute: RATE } });
});

afterAll(async () => {
  await stopAll([node, limited]);
  await chain?.stop();
  for (const d of dirs) await d.remove();
});

type Problem = { code: string; message: string; field?: string };

const int8 = (n: GlassboxNode) => [...n.models.values()][1]!;
const url = (n: GlassboxNode) => `${n.url}/v1/infer`;

async function send(n: GlassboxNode, body: unknown) {
  const res = await post(url(n), body);
  return { status: res.status, body: (await res.json()) as Problem };
}

/** A request naming `victim` as its client, signed by another key. */
async function forged(n: GlassboxNode, victim: Hex, attacker: Hex) {
  const body = await inferBody(n, int8(n), attacker, { client: privateKeyToAccount(victim).address });
  expect(body.client).toBe(privateKeyToAccount(victim).address);
  return body;
}

describe('H-3 client identity: every request is signed by its client', () => {
  it("a forged request in a funded client's name gets 401 and uses none of its credit", async () => {
    const victim = testClient(chain, CLIENT[0]);
    await victim.deposit(100n * PRICE);
    const attacker = generatePrivateKey();
    for (let i = 0; i < 4; i++) {
      const r = await send(node, await forged(node, victim.key, attacker));
      expect(r.status).toBe(401);
      expect(r.body).toMatchObject({ code: 'SIGNATURE_INVALID', field: 'signature' });
    }
    expect(node.db.getAccount(victim.address).delivered).toBe(0n);
    // The victim is served its whole credit (2 answers) itself.
    const mine = await inferBody(node, int8(node), victim.key);
    expect((await send(node, mine)).status).toBe(200);
    expect((await send(node, await inferBody(node, int8(node), victim.key))).status).toBe(200);
    // Replaying the victim's own signed request returns the stored answer at no new charge.
    const replay = await post(url(node), mine);
    expect(replay.status).toBe(200);
    expect(replay.headers.get('glassbox-replayed')).toBe('true');
    expect(node.db.getAccount(victim.address).delivered).toBe(2n * PRICE);
  });

  it('fresh addresses with valid signatures but no deposit get 402 at once: no free credit', async () => {
    for (let i = 0; i < 5; i++) {
      const key = generatePrivateKey();
      const r = await send(node, await inferBody(node, int8(node), key));
      expect(r.status).toBe(402);
      expect(r.body).toMatchObject({ code: 'PAYMENT_REQUIRED', field: 'client' });
      expect(r.body.message).toContain('must deposit');
      expect(node.db.getAccount(privateKeyToAccount(key).address).delivered).toBe(0n);
    }
  });

  it("a flood of forged requests in a client's name counts against the sender, not the client", async () => {
    const victim = testClient(chain, CLIENT[1]);
    await victim.deposit(100n * PRICE);
    const attacker = generatePrivateKey();
    const statuses: number[] = [];
    for (let i = 0; i < 3 * RATE; i++)
      statuses.push((await send(limited, await forged(limited, victim.key, attacker))).status);
    expect(statuses.slice(0, RATE)).toEqual(Array(RATE).fill(401));
    expect(statuses.slice(RATE)).toEqual(Array(2 * RATE).fill(429)); // the sender's IP is limited
    // The victim, proven by its signature, has its own untouched rate.
    for (let i = 0; i < RATE; i++)
      expect((await send(limited, await inferBody(limited, int8(limited), victim.key))).status).toBe(200);
    expect((await send(limited, await inferBody(limited, int8(limited), victim.key))).status).toBe(429);
  });

  it('a missing, malformed, foreign or non-canonical signature, or one over other inputs, is named', async () => {
    const c = testClient(chain, CLIENT[2]);
    await c.deposit(100n * PRICE);
    const good = await inferBody(node, int8(node), c.key);
    const { signature: _s, ...unsigned } = good;
    let r = await send(node, unsigned);
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ code: 'REQUEST_INVALID', field: 'request.signature' });
    expect(r.body.message).toContain('is required');

    r = await send(node, { ...good, signature: '0x1234' });
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ code: 'REQUEST_INVALID', field: 'request.signature' });

    // 65 well-formed bytes that are no signature of this client
    r = await send(node, { ...good, signature: `0x${'22'.repeat(64)}1c` });
    expect(r.status).toBe(401);
    expect(r.body).toMatchObject({ code: 'SIGNATURE_INVALID', field: 'signature' });

    // the client's own signature in a form the chain would refuse
    r = await send(node, { ...good, signature: nonCanonical(good.signature as Hex).highS });
    expect(r.status).toBe(401);
    expect(r.body).toMatchObject({ code: 'SIGNATURE_INVALID', field: 'signature' });
    expect(r.body.message).toContain('not canonical');

    // signed over other inputs (or another price cap) than the ones sent
    const otherInputs = { features: { dtype: 'uint8', shape: [1, 4], data: [1, 2, 3, 4] } };
    r = await send(node, { ...good, inputs: otherInputs });
    expect(r.status).toBe(401);
    expect(r.body).toMatchObject({ code: 'SIGNATURE_INVALID', field: 'signature' });
    expect(r.body.message).toContain('not signed by its client');
    r = await send(node, { ...good, maxPrice: (20n * PRICE).toString() });
    expect(r.status).toBe(401);

    // The binary transport: the signature is in the glassbox-request header.
    const { inputs: _i, ...head } = good;
    const bytes = encodeTensors(inputsFromJson(int8(node).manifest.inputs, INT8_INPUTS));
    const { signature: _h, ...unsignedHead } = head;
    const missing = await postBinary(url(node), unsignedHead, bytes);
    expect(missing.status).toBe(400);
    expect(((await missing.json()) as Problem).field).toBe(`${REQUEST_HEADER}.signature`);
    const otherBytes = encodeTensors(inputsFromJson(int8(node).manifest.inputs, otherInputs));
    const wrong = await postBinary(url(node), head, otherBytes);
    expect(wrong.status).toBe(401);
    expect(((await wrong.json()) as Problem).field).toBe('signature');
    const signedHead = await signBody(
      node,
      c.key,
      head,
      hashTensors(inputsFromJson(int8(node).manifest.inputs, otherInputs)),
    );
    expect((await postBinary(url(node), signedHead, otherBytes)).status).toBe(200);
    // None of the refused requests was charged.
    expect(node.db.getAccount(c.address).delivered).toBe(PRICE);
  });

  it('a burst of concurrent requests gets no more credit than the requests one by one would', async () => {
    // CLIENT[3] (credit limit 2 prices at this node, 3 deposited) sends 10 requests at once, with
    // the node's read of its escrow cold: every request awaits it, then checks and reserves
    const c = testClient(chain, CLIENT[3]);
    await c.deposit(3n * PRICE);
    const bodies = await Promise.all(Array.from({ length: 10 }, () => inferBody(node, int8(node), c.key)));
    const statuses = await Promise.all(bodies.map(async (b) => (await post(url(node), b)).status));
    expect(statuses.filter((s) => s === 200)).toHaveLength(2);
    expect(statuses.filter((s) => s === 402)).toHaveLength(8);
  });
});
