import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { toHex, type Hex } from 'viem';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { deposit, registerModel } from '../../src/chain/index.js';
import type { GlassboxNode } from '../../src/node/index.js';
import { BINARY_TYPE, RECEIPT_HEADER } from '../../src/protocol/api.js';
import { encodeTensorParts, encodeTensors, hashTensors } from '../../src/protocol/encoding.js';
import { isGlassboxError, type GlassboxError } from '../../src/protocol/errors.js';
import type { ModelPackage } from '../../src/protocol/manifest.js';
import { signedReceiptToJson } from '../../src/protocol/receipt.js';
import { requestMessage, signRequest } from '../../src/protocol/request.js';
import type { Tensor, TensorMap } from '../../src/protocol/tensor.js';
import type { TensorEngine } from '../../src/runtime/index.js';
import {
  BINARY_TRANSPORT_MIN_BYTES,
  closeClient,
  createClient,
  infer,
  postInfer,
  type Client,
  type CreateClientParameters,
} from '../../src/sdk/index.js';
import { createNodeFetch } from '../../src/sdk/http.js';
import { createMemoryStore, loadModel, packModelFolder } from '../../src/store/index.js';
import { exampleDir, exampleEngine } from '../support/examples.js';
import {
  E18,
  PRICE,
  startTestChain,
  startTestNode,
  stopAll,
  tempDir,
  TEST_PARAMS,
  type TestChain,
} from '../node/support.js';

/*
 * The binary tensor transport (src/sdk/transport.ts) against the real node: chosen above the
 * threshold, and giving the same outputs and hashes as JSON. The chain is deployed with a data cap
 * above the threshold (the default cap, 64 KiB, equals it), so that a receipt may carry such inputs.
 */

const CLIENT = 10;
/** 36 images of 28x28 float32: 110 KiB of canonical encoding, above BINARY_TRANSPORT_MIN_BYTES. */
const BATCH = 36;

let chain: TestChain;
let node: GlassboxNode;
let pkg: ModelPackage;
let engine: TensorEngine;
const dirs: { remove(): Promise<void> }[] = [];
const clients: Client[] = [];

/** What crossed the wire: the content types of each /v1/infer request and its answer. */
type Seen = { request: string; answer: string };

async function newClient(
  over: Partial<CreateClientParameters> = {},
): Promise<{ client: Client; seen: Seen[] }> {
  const seen: Seen[] = [];
  const base = createNodeFetch()!;
  const recording = (async (input: string | URL | Request, init?: RequestInit) => {
    const response = await base(input, init);
    if (String(input).endsWith('/v1/infer'))
      seen.push({
        request: (init?.headers as Record<string, string>)['content-type'] ?? '',
        answer: response.headers.get('content-type') ?? '',
      });
    return response;
  }) as typeof fetch;
  const client = await createClient({
    rpcUrl: chain.anvil.rpcUrl,
    chainId: chain.anvil.chainId,
    deployment: chain.deployment,
    account: chain.key(CLIENT) as Hex,
    pollingIntervalMs: 5,
    fetch: recording,
    ...over,
  });
  clients.push(client);
  return { client, seen };
}

/** `batch` images of seeded values in [0, 1). */
function images(batch: number): TensorMap {
  const data = new Float32Array(batch * 28 * 28);
  let x = 12345;
  for (let i = 0; i < data.length; i++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    data[i] = x / 2 ** 31;
  }
  return { image: { dtype: 'float32', shape: [batch, 1, 28, 28], data } };
}

beforeAll(async () => {
  chain = await startTestChain({ ...TEST_PARAMS, maxDataBytes: 120 * 1024 });
  const store = createMemoryStore();
  const { id } = await packModelFolder(store, exampleDir('cnn'));
  pkg = await loadModel(store, id);
  await registerModel(chain.as(0), { model: id, exact: false });
  await deposit(chain.as(CLIENT), 1000n * E18);
  const dir = await tempDir();
  dirs.push(dir);
  node = await startTestNode(chain, 1, dir.dir, {
    models: [{ model: exampleDir('cnn'), price: PRICE.toString() }],
  });
  engine = exampleEngine();
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => closeClient(c)));
});

afterAll(async () => {
  await stopAll([node]);
  await engine?.close();
  await chain?.stop();
  for (const d of dirs) await d.remove();
});

describe('the binary tensor transport', () => {
  it('is chosen above the threshold, and answers the same outputs, hashes and receipt fields as JSON', async () => {
    const inputs = images(BATCH);
    expect(encodeTensors(inputs).byteLength).toBeGreaterThan(BINARY_TRANSPORT_MIN_BYTES);
    const local = await engine.run(pkg, inputs);
    const params = { model: pkg.id, inputs, maxPrice: 10n * PRICE, hedgeAfterMs: false } as const;

    const binary = await newClient();
    const viaBinary = await infer(binary.client, params);
    expect(binary.seen).toEqual([{ request: BINARY_TYPE, answer: BINARY_TYPE }]);

    const json = await newClient({ binaryTransportMinBytes: Infinity });
    const viaJson = await infer(json.client, params);
    expect(json.seen).toEqual([
      { request: 'application/json', answer: expect.stringMatching(/^application\/json/) },
    ]);

    for (const result of [viaBinary, viaJson]) {
      expect(result.report.ok).toBe(true);
      const { receipt } = result.receipts[0]!;
      expect(receipt.inputHash).toBe(local.inputHash);
      expect(receipt.outputHash).toBe(local.outputHash);
      expect(receipt.runtime).toBe(local.runtime);
      expect(receipt.provider).toBe(node.address);
      expect(hashTensors(result.outputs)).toBe(local.outputHash);
    }
    const probs = (r: typeof viaBinary) => r.outputs.probabilities as Tensor<'float32'>;
    expect(probs(viaBinary).shape).toEqual([BATCH, 10]);
    expect(probs(viaBinary).data).toEqual(probs(viaJson).data);

    // The node stored the request's bytes as the inputs it signed for: the canonical encoding.
    const stored = (await (
      await fetch(`${node.url}/v1/receipts/${viaBinary.receipts[0]!.receipt.requestId}`)
    ).json()) as { inputs: string };
    expect(Buffer.from(stored.inputs, 'base64').equals(Buffer.from(encodeTensors(inputs)))).toBe(true);
  });

  it('stays JSON below the threshold', async () => {
    const { client, seen } = await newClient();
    const result = await infer(client, { model: pkg.id, inputs: images(1), maxPrice: 10n * PRICE });
    expect(result.report.ok).toBe(true);
    expect(seen).toEqual([
      { request: 'application/json', answer: expect.stringMatching(/^application\/json/) },
    ]);
  });
});

describe('a malformed binary answer', () => {
  let server: Server | undefined;
  afterEach(async () => {
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined));
    server = undefined;
  });

  /** A loopback server answering every request with `body` as binary, `receipt` in its header. */
  async function serve(body: Uint8Array, receipt: string | undefined): Promise<string> {
    server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, {
          'content-type': BINARY_TYPE,
          ...(receipt === undefined ? {} : { [RECEIPT_HEADER]: receipt }),
        });
        res.end(body);
      });
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  /** A signed binary request to the node, sent to `endpoint` instead. */
  async function send(client: Client, endpoint: string) {
    const inputs = images(BATCH);
    const head = {
      requestId: toHex(crypto.getRandomValues(new Uint8Array(32))),
      model: pkg.id,
      client: client.address,
      maxPrice: (10n * PRICE).toString(),
    };
    const signature = await signRequest(
      client.account,
      requestMessage(head, { provider: node.address, inputHash: hashTensors(inputs) }),
      { chainId: client.chainId, verifyingContract: client.deployment.contracts.receiptLedger },
    );
    return postInfer(
      client,
      { address: node.address, endpoint },
      { ...head, signature, encoded: encodeTensorParts(inputs) },
    ).then(
      () => {
        throw new Error('a malformed answer was accepted');
      },
      (error: unknown) => {
        if (!isGlassboxError(error)) throw error;
        return error as GlassboxError;
      },
    );
  }

  it('is PROVIDER_ERROR naming what is wrong: outputs that do not decode, a missing or malformed receipt', async () => {
    const { client } = await newClient();
    const real = await infer(client, { model: pkg.id, inputs: images(BATCH), maxPrice: 10n * PRICE });
    const receipt = JSON.stringify(signedReceiptToJson(real.receipts[0]!));
    const outputs = encodeTensors(real.outputs);

    const truncated = await send(client, await serve(outputs.subarray(0, outputs.length - 3), receipt));
    expect(truncated.code).toBe('PROVIDER_ERROR');
    expect(truncated.field).toBe('body');
    expect(truncated.shortMessage).toBe(
      `provider ${node.address} answered outputs that are not a canonical tensor encoding: truncated encoding: tensor "probabilities" data needs 1440 bytes at offset ${outputs.length - 1440}`,
    );
    server!.closeAllConnections();
    await new Promise((resolve) => server!.close(resolve));

    const missing = await send(client, await serve(outputs, undefined));
    expect(missing.code).toBe('PROVIDER_ERROR');
    expect(missing.field).toBe(`response.${RECEIPT_HEADER}`);
    server!.closeAllConnections();
    await new Promise((resolve) => server!.close(resolve));

    const unsigned = JSON.stringify({ ...JSON.parse(receipt), signature: 'nope' });
    const malformed = await send(client, await serve(outputs, unsigned));
    expect(malformed.code).toBe('PROVIDER_ERROR');
    expect(malformed.field).toBe(`response.${RECEIPT_HEADER}.signature`);
  });
});
