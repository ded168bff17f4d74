import Fastify, { type FastifyInstance } from 'fastify';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, type ApiTarget } from '../../src/api/client.js';
import { providerApi } from '../../src/api/provider.js';
import { routes } from '../../src/api/routes.js';
import { PROVIDER_HEADER, type BatchResponse } from '../../src/protocol/api.js';
import { failure, h, PROVIDER, storedReceipt } from '../support/wire.js';

/*
 * The typed client against a provider that lies: a real fastify server on loopback, controlled by
 * the test, answering each route with wrong types, missing fields, 10 MB of garbage, a problem, or
 * nothing in time. Every refusal is a GlassboxError naming the field.
 */

const root = h('root');
const TEN_MB = 10 * 1024 * 1024;

let server: FastifyInstance;
let endpoint: string;
/** How many bytes of garbage the server has handed to its socket. */
let garbageSent = 0;

beforeAll(async () => {
  server = Fastify();
  // (a) wrong types: the fourth receipt's signature is a number
  server.get('/v1/batches/:root', async () => {
    const page: BatchResponse = {
      root,
      count: 5,
      offset: 0,
      receipts: [0, 1, 2, 3, 4].map((i) => storedReceipt(i)),
    };
    return {
      ...page,
      receipts: page.receipts.map((r, i) =>
        i === 3 ? { ...r, receipt: { ...r.receipt, signature: 7 } } : r,
      ),
    };
  });
  // (b) missing fields: no signer, no runtime
  server.get('/v1/models', async () => ({ provider: PROVIDER, chainId: 31337, profile: {}, models: [] }));
  // (c) 10 MB of garbage, streamed without a declared length, counted as it leaves
  server.get('/v1/status', async (_request, reply) => {
    garbageSent = 0;
    const chunk = Buffer.alloc(64 * 1024, 'z');
    const garbage = Readable.from(
      (function* () {
        for (let sent = 0; sent < TEN_MB; sent += chunk.byteLength) {
          garbageSent += chunk.byteLength;
          yield chunk;
        }
      })(),
    );
    return reply.type('application/json').send(garbage);
  });
  // the same garbage with its length declared: refused before a byte is read
  server.get('/v1/evidence/:hash', async (_request, reply) =>
    reply.type('application/json').send(Buffer.alloc(TEN_MB, 'z')),
  );
  server.get('/v1/receipts/:id', async (_request, reply) =>
    reply
      .status(404)
      .type('application/problem+json')
      .send({ code: 'NOT_FOUND', message: 'no receipt', field: 'id' }),
  );
  server.get('/health', async () => new Promise(() => undefined)); // never answers
  server.post('/v1/vouchers', async (_request, reply) =>
    reply
      .header(PROVIDER_HEADER, '0x000000000000000000000000000000000000dEaD')
      .send({ amount: '1', owed: '0' }),
  );
  endpoint = await server.listen({ host: '127.0.0.1', port: 0 });
});

afterAll(() => server?.close());

const target = (over: Partial<ApiTarget> = {}): ApiTarget => ({
  endpoint,
  name: `provider ${PROVIDER}`,
  provider: PROVIDER,
  timeoutMs: 5000,
  maxResponseBytes: 1024 * 1024,
  ...over,
});

describe('the typed client refuses what does not follow the route, naming the field', () => {
  it('(a) wrong types: PROVIDER_ERROR naming receipts[3].receipt.signature', async () => {
    const error = await failure(providerApi(endpoint, { provider: PROVIDER }).getBatchPage(root, 0));
    expect(error.code).toBe('PROVIDER_ERROR');
    expect(error.field).toBe('response.receipts.3.receipt.signature');
    expect(error.shortMessage).toBe(
      `provider ${PROVIDER} answered a malformed body: response.receipts.3.receipt.signature: Invalid input: expected string, received number`,
    );
  });

  it('(b) missing fields: PROVIDER_ERROR naming the first, listing the others', async () => {
    const error = await failure(call(target(), routes.models, {}));
    expect(error.code).toBe('PROVIDER_ERROR');
    expect(error.field).toBe('response.signer');
    expect(error.metaMessages).toContainEqual(expect.stringMatching(/^also response.runtime: /));
  });

  it('(c) 10 MB of garbage: RESPONSE_TOO_LARGE at the cap, the rest never read', async () => {
    const error = await failure(call(target(), routes.status, {}));
    expect(error.code).toBe('RESPONSE_TOO_LARGE');
    expect(error.field).toBe('body');
    expect(error.shortMessage).toBe(`provider ${PROVIDER} answered more than 1048576 bytes (it sent more)`);
    // the reader stopped and closed the connection: the server could not hand over all of it
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(garbageSent).toBeLessThan(TEN_MB);

    const declared = await failure(call(target(), routes.evidence, { params: { hash: root } }));
    expect(declared.code).toBe('RESPONSE_TOO_LARGE');
    expect(declared.shortMessage).toMatch(/it declares 10485760 bytes/);
  });

  it('10 MB of garbage within the cap: PROVIDER_ERROR, the body is not JSON', async () => {
    const error = await failure(call(target({ maxResponseBytes: 2 * TEN_MB }), routes.status, {}));
    expect(error.code).toBe('PROVIDER_ERROR');
    expect(error.field).toBe('body');
  });

  it("a problem+json answer is the provider's own code and field", async () => {
    const error = await failure(call(target(), routes.receipt, { params: { id: root } }));
    expect(error).toMatchObject({
      code: 'NOT_FOUND',
      field: 'id',
      details: { status: 404, provider: PROVIDER },
    });
  });

  it('no answer in time: PROVIDER_TIMEOUT', async () => {
    const error = await failure(call(target({ timeoutMs: 200 }), routes.health, {}));
    expect(error.code).toBe('PROVIDER_TIMEOUT');
  });

  it('an answer naming another provider: a stale endpoint, PROVIDER_UNAVAILABLE', async () => {
    const body = {
      voucher: { client: PROVIDER, provider: PROVIDER, amount: '1' },
      signature: '0x00',
    } as const;
    const error = await failure(call(target(), routes.vouchers, { body }));
    expect(error.code).toBe('PROVIDER_UNAVAILABLE');
    expect(error.details).toMatchObject({ staleEndpoint: true });
  });
});
