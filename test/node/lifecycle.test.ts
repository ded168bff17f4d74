import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GlassboxNode } from '../../src/node/index.js';
import type { InferResponse, StoredReceipt } from '../../src/protocol/api.js';
import {
  CLIENT,
  fundClients,
  inferBody,
  post,
  PRICE,
  PROVIDER,
  startTestChain,
  startTestNode,
  stopAll,
  tempDir,
  type TestChain,
} from './support.js';

let chain: TestChain;
let a: GlassboxNode;
let b: GlassboxNode | undefined;
let evil: Server;
let evilUrl: string;
const dirs: { dir: string; remove(): Promise<void> }[] = [];

beforeAll(async () => {
  chain = await startTestChain();
  await fundClients(chain);
  for (let i = 0; i < 4; i++) dirs.push(await tempDir());
  a = await startTestNode(chain, PROVIDER[0], dirs[0]!.dir, { creditLimit: (10_000n * PRICE).toString() });
  // A peer that answers every blob with the wrong bytes.
  evil = createServer((_req, res) => res.end('not the blob you asked for'));
  await new Promise<void>((r) => evil.listen(0, '127.0.0.1', r));
  evilUrl = `http://127.0.0.1:${(evil.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await stopAll([a, b]);
  await new Promise((r) => evil.close(r));
  await chain?.stop();
  for (const d of dirs) await d.remove();
});

describe('provider node: models from peers', () => {
  it('fetches a model by id from a peer, skipping a peer whose bytes do not hash to the CID', async () => {
    const ids = [...a.models.keys()];
    b = await startTestNode(chain, PROVIDER[1], dirs[1]!.dir, {
      models: ids.map((model) => ({ model, price: (2n * PRICE).toString() })),
      peers: [evilUrl, a.url],
    });
    expect([...b.models.keys()]).toEqual(ids);
    const res = await post(
      `${b.url}/v1/infer`,
      await inferBody(b, b.models.get(ids[1]!)!, chain.key(CLIENT[0])),
    );
    expect(res.status).toBe(200);
    expect(((await res.json()) as InferResponse).receipt.receipt.price).toBe((2n * PRICE).toString());
  });

  it('refuses to start when no peer serves the model intact', async () => {
    await expect(
      startTestNode(chain, PROVIDER[2], dirs[2]!.dir, {
        models: [{ model: [...a.models.keys()][0]!, price: '1' }],
        peers: [evilUrl],
      }),
    ).rejects.toMatchObject({ code: 'BLOB_NOT_FOUND' });
  });
});

describe('provider node: prices', () => {
  it('refuses to start when a tensor model is given an input price, naming the field', async () => {
    await expect(
      startTestNode(chain, PROVIDER[2], dirs[2]!.dir, {
        models: [{ model: [...a.models.keys()][0]!, price: '1', inputPrice: '5' }],
        peers: [a.url],
      }),
    ).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
      field: 'models.0.inputPrice',
      message: expect.stringMatching(/priced per inference: the inputPrice must be 0, not 5/),
    });
  });
});

describe('provider node: graceful shutdown', () => {
  it('finishes requests in flight on stop, and keeps every receipt it answered', async () => {
    const pkg = [...a.models.values()][0]!;
    const node = a;
    const bodies = await Promise.all(
      Array.from({ length: 40 }, () => inferBody(node, pkg, chain.key(CLIENT[1]))),
    );
    let first = (): void => undefined;
    const answering = new Promise<void>((resolve) => (first = resolve));
    const inflight = bodies.map((body) =>
      post(`${a.url}/v1/infer`, body).then(
        async (res) => {
          first();
          return {
            status: res.status,
            body: res.status === 200 ? ((await res.json()) as InferResponse) : undefined,
          };
        },
        () => ({ status: 0, body: undefined }), // refused once the node stopped accepting
      ),
    );
    await answering; // stop while the rest are in flight
    await a.stop();
    const results = await Promise.all(inflight);
    const answered = results.filter((r) => r.status === 200);
    expect(answered.length).toBeGreaterThan(0);
    expect(results.every((r) => [0, 200, 503].includes(r.status))).toBe(true);

    a = await startTestNode(chain, PROVIDER[0], dirs[0]!.dir, { creditLimit: (10_000n * PRICE).toString() });
    for (const r of answered) {
      const res = await fetch(`${a.url}/v1/receipts/${r.body!.receipt.receipt.requestId}`);
      expect(res.status).toBe(200);
      const stored = (await res.json()) as StoredReceipt;
      expect(stored.receipt).toEqual(r.body!.receipt);
      expect(stored.batch?.id).toBeDefined(); // stop committed the open batch
    }
    console.log(`graceful stop: ${answered.length}/40 answered, the rest refused or not yet connected`);
  });

  it('serves 200 sequential requests with a p50 latency', async () => {
    const pkg = [...a.models.values()][1]!;
    const times: number[] = [];
    for (let i = 0; i < 200; i++) {
      const body = await inferBody(a, pkg, chain.key(CLIENT[2]));
      const t0 = performance.now();
      const res = await post(`${a.url}/v1/infer`, body);
      await res.arrayBuffer();
      times.push(performance.now() - t0);
      expect(res.status).toBe(200);
    }
    times.sort((x, y) => x - y);
    const p = (q: number) => times[Math.floor(q * (times.length - 1))]!.toFixed(2);
    console.log(`iris-int8 over HTTP, sequential: p50 ${p(0.5)} ms, p90 ${p(0.9)} ms, p99 ${p(0.99)} ms`);
  });
});
