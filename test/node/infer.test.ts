import Database from 'better-sqlite3';
import { join } from 'node:path';
import { getAddress, type Hex } from 'viem';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getProvider, getOffer, getModel, isProviderSigner } from '../../src/chain/index.js';
import type { GlassboxNode } from '../../src/node/index.js';
import {
  RECEIPT_HEADER,
  type InferResponse,
  type ModelsResponse,
  type StoredReceipt,
} from '../../src/protocol/api.js';
import { decodeTensors, encodeTensors, hashTensors, tensorsFromJson } from '../../src/protocol/encoding.js';
import { inputsFromJson } from '../../src/protocol/inputs.js';
import { modelDigest } from '../../src/protocol/manifest.js';
import { recoverReceiptSigner, signedReceiptFromJson } from '../../src/protocol/receipt.js';
import {
  CLIENT,
  fundClients,
  inferBody,
  INT8_INPUTS,
  IRIS_INPUTS,
  post,
  postBinary,
  PRICE,
  PROVIDER,
  requestId,
  signBody,
  startTestChain,
  startTestNode,
  tempDir,
  type TestChain,
} from './support.js';
import { exampleEngine } from '../support/examples.js';

let chain: TestChain;
let node: GlassboxNode;
let dataDir: { dir: string; remove(): Promise<void> };
let iris: string;
let int8: string;
const pkgOf = (id: string) => node.models.get(id)!;
const engine = exampleEngine();

beforeAll(async () => {
  chain = await startTestChain();
  dataDir = await tempDir();
  await fundClients(chain);
  node = await startTestNode(chain, PROVIDER[0], dataDir.dir);
  [iris, int8] = [...node.models.keys()] as [string, string];
});

afterAll(async () => {
  await node?.stop();
  await engine.close();
  await chain?.stop();
  await dataDir?.remove();
});

describe('provider node: start', () => {
  it('registers, stakes, registers the models and offers them on chain', async () => {
    const info = await getProvider(chain.as(0), node.address);
    expect(info.registered).toBe(true);
    expect(info.endpoint).toBe(node.url);
    expect(info.signer).toBe(node.signer);
    expect(info.active).toBe(true);
    expect(node.signer).not.toBe(node.address);
    for (const id of [iris, int8]) {
      // a tensor model is priced per inference: its input price is 0
      expect(await getOffer(chain.as(0), { provider: node.address, model: id })).toMatchObject({
        active: true,
        price: PRICE,
        inputPrice: 0n,
      });
    }
    expect((await getModel(chain.as(0), iris))?.exact).toBe(false); // iris: tolerance policy
    expect((await getModel(chain.as(0), int8))?.exact).toBe(true);
    expect(await isProviderSigner(chain.as(0), { provider: node.address, key: node.signer })).toBe(true);
  });

  it('GET /v1/models lists ids, schemas, prices and the runtime profile', async () => {
    const res = await fetch(`${node.url}/v1/models`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as ModelsResponse;
    expect(body.provider).toBe(node.address);
    expect(body.signer).toBe(node.signer);
    expect(body.chainId).toBe(chain.anvil.chainId);
    expect(body.runtime).toBe(engine.runtimeHash);
    expect(body.models.map((m) => m.id).sort()).toEqual([iris, int8].sort());
    expect(body.models.every((m) => m.price === PRICE.toString() && m.inputPrice === '0')).toBe(true);
    expect(body.models.find((m) => m.id === iris)?.inputs).toEqual(node.models.get(iris)!.manifest.inputs);
  });
});

describe('provider node: POST /v1/infer', () => {
  const client = () => getAddress(chain.address(CLIENT[0]));
  const key = () => chain.key(CLIENT[0]);
  const domain = () => ({
    chainId: chain.anvil.chainId,
    verifyingContract: chain.deployment.contracts.receiptLedger,
  });

  it('answers JSON with the right outputs and a receipt signed by the registered signer', async () => {
    const body = await inferBody(node, pkgOf(iris), key(), { trace: true });
    const t0 = performance.now();
    const res = await post(`${node.url}/v1/infer`, body);
    const ms = performance.now() - t0;
    expect(res.status, await res.clone().text()).toBe(200);
    const answer = (await res.json()) as InferResponse;
    const pkg = node.models.get(iris)!;
    const inputs = inputsFromJson(pkg.manifest.inputs, IRIS_INPUTS);
    const local = await engine.run(pkg, inputs, { trace: true });
    const outputs = tensorsFromJson(answer.outputs, 'outputs');
    expect(hashTensors(outputs)).toBe(local.outputHash);

    const signed = signedReceiptFromJson(answer.receipt);
    const r = signed.receipt;
    expect(await recoverReceiptSigner(signed, domain())).toBe(node.signer);
    expect(r.requestId).toBe((body.requestId as string).toLowerCase());
    expect(r.provider).toBe(node.address);
    expect(r.client).toBe(client());
    expect(r.model).toBe(modelDigest(iris));
    expect(r.inputHash).toBe(hashTensors(inputs));
    expect(r.outputHash).toBe(local.outputHash);
    expect(r.runtime).toBe(engine.runtimeHash);
    expect(r.traceRoot).toBe(local.traceRoot);
    expect(r.traceRoot).not.toBe(`0x${'0'.repeat(64)}`);
    expect(r.price).toBe(PRICE);
    expect(Math.abs(Number(r.timestamp) - Date.now())).toBeLessThan(10_000);
    console.log(`first JSON inference round trip: ${ms.toFixed(1)} ms`);
  });

  it('answers the binary transport with the canonical encoding and the receipt in a header', async () => {
    const pkg = node.models.get(int8)!;
    const inputs = inputsFromJson(pkg.manifest.inputs, INT8_INPUTS);
    const { inputs: _inputs, ...head } = await inferBody(node, pkgOf(int8), key());
    const res = await postBinary(`${node.url}/v1/infer`, head, encodeTensors(inputs));
    expect(res.status, await res.clone().text()).toBe(200);
    expect(res.headers.get('content-type')).toContain('application/octet-stream');
    const outputs = decodeTensors(new Uint8Array(await res.arrayBuffer()));
    const local = await engine.run(pkg, inputs);
    expect(hashTensors(outputs)).toBe(local.outputHash);
    const signed = signedReceiptFromJson(JSON.parse(res.headers.get(RECEIPT_HEADER)!));
    expect(signed.receipt.outputHash).toBe(local.outputHash);
    expect(signed.receipt.inputHash).toBe(local.inputHash);
    expect(await recoverReceiptSigner(signed, domain())).toBe(node.signer);

    // binary in, JSON out
    const res2 = await postBinary(
      `${node.url}/v1/infer`,
      await signBody(node, key(), { ...head, requestId: requestId() }, hashTensors(inputs)),
      encodeTensors(inputs),
      'application/json',
    );
    expect(res2.status).toBe(200);
    const json = (await res2.json()) as InferResponse;
    expect(hashTensors(tensorsFromJson(json.outputs))).toBe(local.outputHash);
  });

  it('a receipt is in the database once its answer is received, with the inputs for verifiers', async () => {
    const body = await inferBody(node, pkgOf(int8), key());
    const res = await post(`${node.url}/v1/infer`, body);
    const answer = (await res.json()) as InferResponse;
    // A second connection to the same file sees the committed row: it is durable, not in a buffer.
    const db = new Database(join(dataDir.dir, 'node.sqlite'), { readonly: true });
    const row = db
      .prepare('SELECT receipt, inputs FROM receipts WHERE request_id = ?')
      .get((body.requestId as string).toLowerCase()) as { receipt: string; inputs: Buffer } | undefined;
    db.close();
    expect(row).toBeDefined();
    expect(JSON.parse(row!.receipt)).toEqual(answer.receipt);
    const stored = (await (
      await fetch(`${node.url}/v1/receipts/${body.requestId as string}`)
    ).json()) as StoredReceipt;
    expect(stored.receipt).toEqual(answer.receipt);
    const inputs = decodeTensors(new Uint8Array(Buffer.from(stored.inputs!, 'base64')));
    expect(hashTensors(inputs)).toBe(answer.receipt.receipt.inputHash);
  });

  it('concurrent answers, committed in groups: each receipt is in the database when its answer arrives', async () => {
    const db = new Database(join(dataDir.dir, 'node.sqlite'), { readonly: true });
    try {
      const stored = db.prepare('SELECT 1 FROM receipts WHERE request_id = ?');
      const bodies = await Promise.all(Array.from({ length: 12 }, () => inferBody(node, pkgOf(int8), key())));
      // Checked in the same turn as each answer's headers arrive, before any other answer is read.
      const seen = await Promise.all(
        bodies.map((body) =>
          post(`${node.url}/v1/infer`, body).then((res) => ({
            status: res.status,
            stored: stored.get((body.requestId as string).toLowerCase()) !== undefined,
          })),
        ),
      );
      expect(seen).toEqual(Array(12).fill({ status: 200, stored: true }));
    } finally {
      db.close();
    }
  });

  it('a retried request id gets the same answer; a reused one for other inputs is refused', async () => {
    const body = await inferBody(node, pkgOf(int8), key());
    const first = (await (await post(`${node.url}/v1/infer`, body)).json()) as InferResponse;
    const again = await post(`${node.url}/v1/infer`, body);
    expect(again.status).toBe(200);
    expect(again.headers.get('glassbox-replayed')).toBe('true');
    expect(((await again.json()) as InferResponse).receipt).toEqual(first.receipt);
    // signed by the client over the other inputs: the id's reuse is what is refused
    const other = await post(
      `${node.url}/v1/infer`,
      await signBody(node, key(), {
        ...body,
        inputs: { features: { dtype: 'uint8', shape: [1, 4], data: [1, 2, 3, 4] } },
      }),
    );
    expect(other.status).toBe(409);
    expect(((await other.json()) as { code: string }).code).toBe('REQUEST_CONFLICT');
  });

  it('keeps every receipt it answered across stop and start, and sends no transaction on restart', async () => {
    const ids: Hex[] = [];
    const receipts: unknown[] = [];
    for (let i = 0; i < 5; i++) {
      const body = await inferBody(node, pkgOf(i % 2 ? iris : int8), key());
      const res = await post(`${node.url}/v1/infer`, body);
      ids.push(body.requestId as Hex);
      receipts.push(((await res.json()) as InferResponse).receipt);
    }
    await node.stop();
    node = await startTestNode(chain, PROVIDER[0], dataDir.dir);
    expect(node.actions.filter((a) => a.action !== 'setEndpoint')).toEqual([]);
    for (const [i, id] of ids.entries()) {
      const res = await fetch(`${node.url}/v1/receipts/${id}`);
      expect(res.status).toBe(200);
      expect(((await res.json()) as StoredReceipt).receipt).toEqual(receipts[i]);
    }
  });
});
