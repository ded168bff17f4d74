import Fastify, { type FastifyInstance } from 'fastify';
import { validatorCompiler } from 'fastify-type-provider-zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { routes } from '../../src/api/routes.js';
import { errorHandler } from '../../src/node/problem.js';
import { serve, wireSerializerCompiler, type Answer } from '../../src/api/serve.js';

/*
 * The node's side of the route table (src/api/serve.ts) on a real fastify server: requests
 * are validated by the entry's schemas, naming the field under the part it is in, and an answer
 * that breaks its schema never leaves: 500 INTERNAL naming the field instead.
 */

let app: FastifyInstance;
let url: string;
let models: unknown;

beforeAll(async () => {
  app = Fastify();
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(wireSerializerCompiler);
  app.setErrorHandler(errorHandler({ bodyLimitBytes: 1024 }));
  await app.register(
    async (v1) => {
      serve(v1, routes.models, async () => models as Answer<typeof routes.models>);
      serve(v1, routes.batch, async () => {
        throw new Error('not reached: every request here is invalid');
      });
      serve(v1, routes.vouchers, async () => ({ amount: '0', owed: '0' }));
    },
    { prefix: '/v1' },
  );
  url = await app.listen({ host: '127.0.0.1', port: 0 });
});

afterAll(() => app?.close());

describe('routes served against the table', () => {
  it('an answer that breaks its schema is 500 INTERNAL naming the field, and is not sent', async () => {
    models = { provider: '0x70997970C51812dc3A010C7d01b50e0d17dc79C8', chainId: 1, models: [], secret: 'x' };
    const res = await fetch(`${url}/v1/models`);
    expect(res.status).toBe(500);
    const text = await res.text();
    expect(JSON.parse(text)).toMatchObject({ code: 'INTERNAL', field: 'response.signer' });
    expect(text).not.toContain('secret');
  });

  it('requests are validated by the schemas, the field named under its part', async () => {
    const problem = async (path: string, init: RequestInit = {}) =>
      (await (await fetch(`${url}${path}`, init)).json()) as object;
    expect(await problem('/v1/batches/0x12')).toMatchObject({
      code: 'REQUEST_INVALID',
      field: 'params.root',
    });
    expect(await problem(`/v1/batches/0x${'00'.repeat(32)}?limit=0`)).toMatchObject({ field: 'query.limit' });
    expect(await problem(`/v1/batches/0x${'00'.repeat(32)}?other=1`)).toMatchObject({ field: 'query.other' });
    const post = { method: 'POST', headers: { 'content-type': 'application/json' } };
    expect(await problem('/v1/vouchers', { ...post, body: '{"voucher":{}}' })).toMatchObject({
      code: 'REQUEST_INVALID',
      field: 'voucher.voucher.client',
    });
  });
});
