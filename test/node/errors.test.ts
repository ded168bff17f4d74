import fc from 'fast-check';
import { request as httpRequest } from 'node:http';
import type { Hex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GlassboxNode } from '../../src/node/index.js';
import { BINARY_TYPE, PROVIDER_HEADER, REQUEST_HEADER, type InferResponse } from '../../src/protocol/api.js';
import { encodeTensors, hashTensors, tensorsFromJson } from '../../src/protocol/encoding.js';
import { fileCid } from '../../src/protocol/cid.js';
import { inputsFromJson } from '../../src/protocol/inputs.js';
import {
  CLIENT,
  DUMMY_SIGNATURE,
  fundClients,
  inferBody,
  post,
  postBinary,
  PRICE,
  PROVIDER,
  requestId,
  signBody,
  startTestChain,
  startTestNode,
  stopAll,
  tempDir,
  type TestChain,
} from './support.js';
import { exampleEngine } from '../support/examples.js';

let chain: TestChain;
let node: GlassboxNode;
let limited: GlassboxNode;
let cheat: GlassboxNode;
const dirs: { dir: string; remove(): Promise<void> }[] = [];
const engine = exampleEngine();
let client: Hex;

beforeAll(async () => {
  chain = await startTestChain();
  for (let i = 0; i < 3; i++) dirs.push(await tempDir());
  [node, limited, cheat] = await Promise.all([
    startTestNode(chain, PROVIDER[0], dirs[0]!.dir, {
      creditLimit: (10n ** 9n * PRICE).toString(),
      rateLimit: { perMinute: 1_000_000 },
    }),
    startTestNode(chain, PROVIDER[1], dirs[1]!.dir, { rateLimit: { perMinute: 3 } }),
    startTestNode(chain, PROVIDER[2], dirs[2]!.dir, {}, { perturb: 1 }),
  ]);
  client = chain.key(CLIENT[0]);
  await fundClients(chain);
});

afterAll(async () => {
  await stopAll([node, limited, cheat]);
  await engine.close();
  await chain?.stop();
  for (const d of dirs) await d.remove();
});

type Problem = { code: string; message: string; field?: string };

async function expectProblem(res: Response, status: number, code: string, field?: string): Promise<Problem> {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  expect(res.headers.get('content-type')).toContain('application/problem+json');
  const body = JSON.parse(text) as Problem;
  expect(body.code).toBe(code);
  expect(typeof body.message).toBe('string');
  if (field !== undefined) expect(body.field).toBe(field);
  return body;
}

const iris = () => [...node.models.values()][0]!;
const int8 = () => [...node.models.values()][1]!;
const healthy = async (n: GlassboxNode) => expect((await fetch(`${n.url}/health`)).status).toBe(200);

describe('provider node: bad requests get 4xx problem+json, and the node keeps serving', () => {
  it('malformed JSON, missing and malformed fields', async () => {
    const url = `${node.url}/v1/infer`;
    await expectProblem(await post(url, '{"requestId": '), 400, 'REQUEST_INVALID', 'body');
    await expectProblem(await post(url, '[1,2]'), 400, 'REQUEST_INVALID');
    await expectProblem(await post(url, 'null'), 400, 'REQUEST_INVALID');
    const { requestId: _r, ...noId } = await inferBody(node, iris(), client);
    await expectProblem(await post(url, noId), 400, 'REQUEST_INVALID', 'request.requestId');
    await expectProblem(
      await post(url, await inferBody(node, iris(), client, { client: '0x12' })),
      400,
      'REQUEST_INVALID',
      'request.client',
    );
    await expectProblem(
      await post(url, await inferBody(node, iris(), client, { maxPrice: '-1' })),
      400,
      'REQUEST_INVALID',
      'request.maxPrice',
    );
    await expectProblem(
      await post(url, await inferBody(node, iris(), client, { extra: 1 })),
      400,
      'REQUEST_INVALID',
    );
    await expectProblem(
      await fetch(url, { method: 'POST', headers: { 'content-type': 'application/xml' }, body: '<a/>' }),
      400,
      'REQUEST_INVALID',
      'content-type',
    );
    await healthy(node);
  });

  it('wrong shapes, dtypes and values name the input', async () => {
    const url = `${node.url}/v1/infer`;
    const f = (features: unknown) => inferBody(node, iris(), client, { inputs: { features } });
    await expectProblem(
      await post(url, await f({ dtype: 'float32', shape: [1, 5], data: [1, 2, 3, 4, 5] })),
      400,
      'INPUT_DIM',
      'inputs.features.shape[1]',
    );
    await expectProblem(
      await post(url, await f({ dtype: 'int32', shape: [1, 4], data: [1, 2, 3, 4] })),
      400,
      'INPUT_DTYPE',
    );
    await expectProblem(
      await post(url, await f({ dtype: 'float32', shape: [4], data: [1, 2, 3, 4] })),
      400,
      'INPUT_RANK',
    );
    await expectProblem(
      await post(url, await f({ dtype: 'float32', shape: [1, 4], data: [1, 2, 3] })),
      400,
      'INPUT_DIM',
    );
    await expectProblem(
      await post(url, await f({ dtype: 'float32', shape: [1, 4], data: [1, 2, 'x', 4] })),
      400,
      'INPUT_VALUE',
    );
    await expectProblem(
      await post(url, await f({ dtype: 'nope', shape: [1, 4], data: [1, 2, 3, 4] })),
      400,
      'INPUT_DTYPE',
    );
    await expectProblem(
      await post(
        url,
        await inferBody(node, iris(), client, {
          inputs: { other: { dtype: 'float32', shape: [1], data: [1] } },
        }),
      ),
      400,
      'INPUT_UNKNOWN',
    );
    await expectProblem(
      await post(url, await inferBody(node, iris(), client, { inputs: {} })),
      400,
      'INPUT_MISSING',
    );
    await healthy(node);
  });

  it('binary requests: missing or bad header, undecodable body', async () => {
    const url = `${node.url}/v1/infer`;
    const { inputs: _i, ...head } = await inferBody(node, int8(), client);
    const decoded = inputsFromJson(int8().manifest.inputs, _i);
    const good = encodeTensors(decoded);
    await expectProblem(
      await fetch(url, { method: 'POST', headers: { 'content-type': BINARY_TYPE }, body: good }),
      400,
      'REQUEST_INVALID',
      REQUEST_HEADER,
    );
    await expectProblem(
      await fetch(url, {
        method: 'POST',
        headers: { 'content-type': BINARY_TYPE, [REQUEST_HEADER]: '{' },
        body: good,
      }),
      400,
      'REQUEST_INVALID',
      REQUEST_HEADER,
    );
    await expectProblem(await postBinary(url, head, good.subarray(0, good.length - 3)), 400, 'TENSOR_DECODE');
    await expectProblem(
      await postBinary(url, { ...head, requestId: requestId() }, new Uint8Array([1, 2, 3])),
      400,
      'TENSOR_DECODE',
    );
    const again = await signBody(node, client, { ...head, requestId: requestId() }, hashTensors(decoded));
    expect((await postBinary(url, again, good)).status).toBe(200);
  });

  it('a 100 MB body gets 413 problem+json', async () => {
    const size = 100 * 1024 * 1024;
    const { status, type, body } = await new Promise<{ status: number; type: string; body: string }>(
      (resolve, reject) => {
        const req = httpRequest(`${node.url}/v1/infer`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'content-length': size },
        });
        req.on('response', (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () =>
            resolve({ status: res.statusCode!, type: String(res.headers['content-type']), body: text }),
          );
        });
        req.on('error', reject);
        const chunk = Buffer.alloc(1024 * 1024, 0x20);
        let sent = 0;
        const write = () => {
          while (sent < size) {
            sent += chunk.length;
            if (!req.write(chunk)) return void req.once('drain', write);
          }
          req.end();
        };
        req.on('error', () => undefined);
        write();
      },
    );
    expect(status).toBe(413);
    expect(type).toContain('application/problem+json');
    expect((JSON.parse(body) as Problem).code).toBe('REQUEST_TOO_LARGE');
    await healthy(node);
  });

  it('unknown model, receipt, batch, blob and route: 404 problem+json', async () => {
    await expectProblem(
      await post(`${node.url}/v1/infer`, await inferBody(node, iris(), client, { model: 'bafkreinope' })),
      404,
      'NOT_FOUND',
      'model',
    );
    await expectProblem(await fetch(`${node.url}/v1/receipts/0x${'ab'.repeat(32)}`), 404, 'NOT_FOUND');
    await expectProblem(await fetch(`${node.url}/v1/receipts/nope`), 400, 'REQUEST_INVALID');
    await expectProblem(await fetch(`${node.url}/v1/batches/0x${'ab'.repeat(32)}`), 404, 'NOT_FOUND');
    await expectProblem(await fetch(`${node.url}/v1/blobs/nope`), 400, 'REQUEST_INVALID', 'cid');
    await expectProblem(
      await fetch(`${node.url}/v1/blobs/${await fileCid(new Uint8Array([1, 2, 3]))}`),
      404,
      'NOT_FOUND',
    );
    await expectProblem(await fetch(`${node.url}/v2/nothing`), 404, 'NOT_FOUND');
    await healthy(node);
  });

  it('per-client rate limit: 429 RATE_LIMITED', async () => {
    const url = `${limited.url}/v1/infer`;
    const pkg = [...limited.models.values()][1]!;
    for (let i = 0; i < 3; i++)
      expect((await post(url, await inferBody(limited, pkg, client))).status).toBe(200);
    await expectProblem(await post(url, await inferBody(limited, pkg, client)), 429, 'RATE_LIMITED');
    // keyed by the proven client: another client is still served
    expect((await post(url, await inferBody(limited, pkg, chain.key(CLIENT[1])))).status).toBe(200);
  });

  it('every answer names the provider in glassbox-provider, errors included', async () => {
    for (const res of [
      await fetch(`${node.url}/v1/models`),
      await fetch(`${node.url}/v2/nothing`),
      await post(`${node.url}/v1/infer`, '{"requestId": '),
    ])
      expect(res.headers.get(PROVIDER_HEADER), res.url).toBe(node.address);
  });

  it('GET /v1/status is rate limited like every route (per IP for a GET)', async () => {
    for (let i = 0; i < 3; i++) expect((await fetch(`${limited.url}/v1/status`)).status).toBe(200);
    await expectProblem(await fetch(`${limited.url}/v1/status`), 429, 'RATE_LIMITED');
    expect((await fetch(`${limited.url}/health`)).status).toBe(200); // monitoring stays exempt
  });

  it('GET /v1/status: a bad limit is 400 naming the field; the limit is echoed', async () => {
    const status = (query: string) => fetch(`${node.url}/v1/status${query}`);
    await expectProblem(await status('?limit=0'), 400, 'REQUEST_INVALID', 'query.limit');
    await expectProblem(await status('?limit=1001'), 400, 'REQUEST_INVALID', 'query.limit');
    await expectProblem(await status('?limit=all'), 400, 'REQUEST_INVALID', 'query.limit');
    await expectProblem(await status('?since=0'), 400, 'REQUEST_INVALID', 'query.since');
    expect(await (await status('')).json()).toMatchObject({ roles: ['provider'], limit: 100 });
    expect(await (await status('?limit=5')).json()).toMatchObject({ limit: 5 });
  });

  it('fuzz: 1200 random bodies never get a 5xx, and every refusal is problem+json', async () => {
    const ids = [iris().id, int8().id];
    const address = privateKeyToAccount(client).address;
    const tensor = fc.record(
      {
        dtype: fc.oneof(
          fc.constantFrom('float32', 'uint8', 'int64', 'string', 'bool'),
          fc.string({ maxLength: 8 }),
        ),
        shape: fc.oneof(
          fc.array(fc.integer({ min: -2, max: 5 }), { maxLength: 4 }),
          fc.anything({ maxDepth: 1 }),
        ),
        data: fc.oneof(
          fc.array(
            fc.oneof(
              fc.double(),
              fc.integer({ min: -300, max: 300 }),
              fc.string({ maxLength: 4 }),
              fc.boolean(),
              fc.constant(null),
            ),
            { maxLength: 24 },
          ),
          fc.anything({ maxDepth: 1 }),
        ),
      },
      { requiredKeys: [] },
    );
    const structured = fc.record(
      {
        requestId: fc.oneof(
          fc.constant(null).map(() => requestId()),
          fc.string({ maxLength: 70 }),
        ),
        model: fc.oneof(fc.constantFrom(...ids), fc.string({ maxLength: 60 })),
        client: fc.oneof(fc.constant(address), fc.string({ maxLength: 44 })),
        signature: fc.oneof(fc.constant(DUMMY_SIGNATURE), fc.string({ maxLength: 140 })),
        maxPrice: fc.oneof(fc.constant((10n * PRICE).toString()), fc.string({ maxLength: 10 }), fc.integer()),
        trace: fc.boolean(),
        inputs: fc.oneof(
          fc.dictionary(fc.constantFrom('features', 'x', '__proto__', ''), tensor, { maxKeys: 2 }),
          fc.anything({ maxDepth: 2 }),
        ),
        voucher: fc.anything({ maxDepth: 2 }),
      },
      { requiredKeys: ['requestId', 'model', 'client', 'maxPrice'] },
    );
    // Well-formed requests with random batches and values (NaN, infinities, out-of-range integers, batch 0).
    const nearlyValid = fc
      .record({
        model: fc.constantFrom(...ids),
        n: fc.integer({ min: 0, max: 3 }),
        values: fc.array(fc.oneof(fc.double(), fc.integer({ min: -10, max: 300 })), {
          minLength: 12,
          maxLength: 12,
        }),
        trace: fc.boolean(),
      })
      .map(({ model, n, values, trace }) => ({
        // signed in the property (signing is async): these must reach the model run
        sign: {
          requestId: requestId(),
          model,
          client: address,
          maxPrice: (10n * PRICE).toString(),
          trace,
          inputs: {
            features: {
              dtype: model === ids[0] ? 'float32' : 'uint8',
              shape: [n, 4],
              data: values.slice(0, 4 * n).map((v) => (Number.isFinite(v) ? v : String(v))),
            },
          },
        },
      }));
    const bodies = fc.oneof(
      fc.string({ maxLength: 200 }),
      fc.json({ maxDepth: 3 }),
      structured.map((b) => JSON.stringify(b)),
      nearlyValid,
    );
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(bodies, async (arbitrary) => {
        const body =
          typeof arbitrary === 'string'
            ? arbitrary
            : JSON.stringify(await signBody(node, client, arbitrary.sign));
        const res = await post(`${node.url}/v1/infer`, body);
        const text = await res.text();
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        if (res.status >= 500) throw new Error(`${res.status} for ${body}: ${text}`);
        if (res.status !== 200) {
          expect(res.headers.get('content-type')).toContain('application/problem+json');
          expect(typeof (JSON.parse(text) as Problem).code).toBe('string');
        }
      }),
      { numRuns: 1200 },
    );
    console.log('fuzz statuses', Object.fromEntries(statuses));
    await healthy(node);
  });
});

describe('provider node: a faulty engine (test/support/faults.ts), health, metrics', () => {
  it('perturb: 1 changes the outputs and signs the perturbed hash', async () => {
    const pkg = [...cheat.models.values()][0]!;
    const body = await inferBody(cheat, pkg, client);
    const res = await post(`${cheat.url}/v1/infer`, body);
    expect(res.status).toBe(200);
    const answer = (await res.json()) as InferResponse;
    const honest = await engine.run(pkg, inputsFromJson(pkg.manifest.inputs, body.inputs));
    const outputs = tensorsFromJson(answer.outputs);
    expect(hashTensors(outputs)).not.toBe(honest.outputHash);
    expect(answer.receipt.receipt.outputHash).toBe(hashTensors(outputs));
    expect(answer.receipt.receipt.inputHash).toBe(honest.inputHash);
    // The first numeric output in canonical order is `label` (int64): its first element is +1.
    expect((outputs.label!.data as BigInt64Array)[0]).toBe(
      (honest.outputs.label!.data as BigInt64Array)[0]! + 1n,
    );
    expect(outputs.probabilities!.data).toEqual(honest.outputs.probabilities!.data);
  });

  it('/health and /metrics answer', async () => {
    const health = await fetch(`${node.url}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({
      ok: true,
      state: 'ready',
      provider: node.address,
      models: 2,
    });
    const metrics = await fetch(`${node.url}/metrics`);
    expect(metrics.status).toBe(200);
    const text = await metrics.text();
    expect(text).toMatch(
      /glassbox_http_requests_total\{route="\/v1\/infer",method="POST",status="200"\} \d+/,
    );
    expect(text).toContain('glassbox_http_request_duration_seconds_bucket');
    expect(text).toMatch(/glassbox_receipts_total\{model="[^"]+"\} \d+/);
    expect(text).toContain('glassbox_batches_total');
  });
});
