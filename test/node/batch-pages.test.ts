import { getAddress, type Hex } from 'viem';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getBatch, getBatchCommits, MAX_DATA_BYTES } from '../../src/chain/index.js';
import type { GlassboxNode } from '../../src/node/index.js';
import {
  BATCH_PAGE_DATA_BYTES,
  BATCH_PAGE_MAX,
  parseBatchResponse,
  readBatchPages,
  type InferResponse,
} from '../../src/protocol/api.js';
import { providerApi } from '../../src/api/provider.js';
import { DEFAULT_MAX_RESPONSE_BYTES } from '../../src/protocol/body.js';
import { encodeTensors, hashTensors } from '../../src/protocol/encoding.js';
import { batchTree } from '../../src/protocol/merkle.js';
import { receiptHash } from '../../src/protocol/receipt.js';
import {
  CLIENT,
  fundClients,
  inferBody,
  post,
  postBinary,
  PROVIDER,
  requestId,
  signBody,
  startTestChain,
  startTestNode,
  tempDir,
  TEST_PARAMS,
  type TestChain,
} from './support.js';

/*
 * GET /v1/batches/:root in pages, on a real node and chain: a batch of more receipts than one page
 * is read whole by following `offset`, pages of large receipts stop at a data budget so that each
 * fits a reader's default cap, and a bad query is a 400 naming the field.
 */

let chain: TestChain;
let node: GlassboxNode;
let dir: { dir: string; remove(): Promise<void> };
const COUNT = BATCH_PAGE_MAX + 6;

beforeAll(async () => {
  chain = await startTestChain({ ...TEST_PARAMS, maxDataBytes: MAX_DATA_BYTES });
  await fundClients(chain);
  dir = await tempDir();
  node = await startTestNode(chain, PROVIDER[0], dir.dir, {
    batch: { maxReceipts: COUNT, maxAgeMs: 600_000 },
    creditLimit: (10n ** 30n).toString(),
  });
});

afterAll(async () => {
  await node?.stop();
  await chain?.stop();
  await dir?.remove();
});

const key = () => chain.key(CLIENT[0]);
const client = () => getAddress(chain.address(CLIENT[0]));
const int8 = () => [...node.models.values()].find((m) => m.manifest.name === 'iris-int8')!;

/** The batch committed last by the node: its on-chain root and count. */
async function lastBatch(): Promise<{ root: Hex; count: number }> {
  await node.flushBatches();
  const commits = await getBatchCommits(chain.as(0), { provider: node.address });
  const { root, count } = await getBatch(chain.as(0), commits.at(-1)!.args.batchId);
  return { root, count };
}

const page = (root: Hex, query = '') => fetch(`${node.url}/v1/batches/${root}${query}`);
/** What a verifier does: read each page with the typed client (a cap, the schema), follow the offset. */
const fetchPage = (root: Hex) => (offset: number) => providerApi(node.url).getBatchPage(root, offset);

describe('batch pages', () => {
  let batch: { root: Hex; count: number };
  let answers: InferResponse[];

  it(`a batch of ${COUNT} receipts: pages of ${BATCH_PAGE_MAX}, read whole by following the offset`, async () => {
    answers = [];
    for (let i = 0; i < COUNT; i++) {
      const res = await post(`${node.url}/v1/infer`, await inferBody(node, int8(), key()));
      expect(res.status).toBe(200);
      answers.push((await res.json()) as InferResponse);
    }
    batch = await lastBatch();
    expect(batch.count).toBe(COUNT);

    const first = parseBatchResponse(await (await page(batch.root)).json());
    expect(first).toMatchObject({ root: batch.root, count: COUNT, offset: 0 });
    expect(first.receipts).toHaveLength(BATCH_PAGE_MAX);
    const last = parseBatchResponse(await (await page(batch.root, `?offset=${BATCH_PAGE_MAX}`)).json());
    expect(last.receipts).toHaveLength(COUNT - BATCH_PAGE_MAX);
    const end = parseBatchResponse(await (await page(batch.root, `?offset=${COUNT}`)).json());
    expect(end.receipts).toEqual([]);

    const listing = await readBatchPages(batch, fetchPage(batch.root));
    expect(listing.receipts.map((r) => r.receipt.receipt.requestId)).toEqual(
      answers.map((a) => a.receipt.receipt.requestId),
    );
    // what was read rebuilds the committed root, and each receipt carries its inputs
    expect(batchTree(listing.receipts.map((r) => receiptHash(r.receipt.receipt))).root).toBe(batch.root);
    expect(listing.receipts.every((r) => r.inputs !== undefined)).toBe(true);
  });

  it('a smaller limit gives smaller pages', async () => {
    const sizes: number[] = [];
    for (let offset = 0; offset < COUNT;) {
      const p = parseBatchResponse(await (await page(batch.root, `?offset=${offset}&limit=10`)).json());
      expect(p.offset).toBe(offset);
      sizes.push(p.receipts.length);
      offset += p.receipts.length;
    }
    expect(sizes).toEqual([10, 10, 10, 10, 10, 10, 10]);
  });

  it("pages stop at BATCH_PAGE_DATA_BYTES of data, and a page of the largest receipt any chain allows is within a reader's default cap", async () => {
    /** A receipt of iris-int8 on `rows` rows: 4 input bytes and 20 output bytes a row. */
    const answer = async (rows: number) => {
      const features = { dtype: 'uint8', shape: [rows, 4], data: new Uint8Array(rows * 4).fill(50) } as const;
      const head = { requestId: requestId(), model: int8().id, client: client(), maxPrice: '1000000000' };
      const signed = await signBody(node, key(), head, hashTensors({ features }));
      const res = await postBinary(`${node.url}/v1/infer`, signed, encodeTensors({ features }));
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    };
    const sixMiB = (6 << 20) / 24;
    for (let i = 0; i < 3; i++) await answer(sixMiB);
    await answer(Math.floor((MAX_DATA_BYTES - 400) / 24)); // just under the most a receipt may carry
    const big = await lastBatch();
    expect(big.count).toBe(4);
    const sizes: number[] = [];
    for (let offset = 0; offset < big.count;) {
      const res = await page(big.root, `?offset=${offset}`);
      const bytes = new Uint8Array(await res.arrayBuffer());
      expect(bytes.byteLength).toBeLessThan(DEFAULT_MAX_RESPONSE_BYTES);
      const p = parseBatchResponse(JSON.parse(new TextDecoder().decode(bytes)));
      sizes.push(p.receipts.length);
      offset += p.receipts.length;
    }
    // 12 MiB, then 6 MiB (another 6 would pass 16 MiB), then the 16 MiB one on its own
    expect(BATCH_PAGE_DATA_BYTES).toBe(16 << 20);
    expect(sizes).toEqual([2, 1, 1]);
    const listing = await readBatchPages(big, fetchPage(big.root));
    expect(listing.receipts).toHaveLength(4);
    expect(listing.receipts.at(-1)!.receipt.receipt.provider).toBe(node.address);
  });

  it('a bad query is 400 REQUEST_INVALID naming the field', async () => {
    const problem = async (query: string, field: string) => {
      const res = await page(batch.root, query);
      expect(res.status, query).toBe(400);
      expect(await res.json()).toMatchObject({ code: 'REQUEST_INVALID', field });
    };
    await problem(`?limit=${BATCH_PAGE_MAX + 1}`, 'query.limit');
    await problem('?limit=0', 'query.limit');
    await problem('?limit=ten', 'query.limit');
    await problem('?offset=-1', 'query.offset');
    await problem('?offset=1.5', 'query.offset');
    await problem(`?offset=${COUNT + 1}`, 'query.offset');
    await problem('?page=2', 'query.page');
  });
});
