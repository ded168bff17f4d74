import { Validator } from '@seriousme/openapi-schema-validator';
import { readFile } from 'node:fs/promises';
import type { OpenAPIV3_1 } from 'openapi-types';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, routeUrl } from '../../src/api/client.js';
import { routes, type ApiRoute } from '../../src/api/routes.js';
import type { GlassboxNode } from '../../src/node/index.js';
import { DEFAULT_MAX_RESPONSE_BYTES } from '../../src/protocol/body.js';
import { PROVIDER, startTestChain, startTestNode, tempDir, type TestChain } from '../node/support.js';

/*
 * The OpenAPI document of the provider API: what a real node serves at GET /v1/openapi.json is
 * valid OpenAPI 3.1 (@seriousme/openapi-schema-validator), is docs/api/openapi.json byte for byte
 * as JSON (the build writes the file: a route changed without a build fails here), and names every
 * route the node answers, binary ones with their content types.
 */

let chain: TestChain;
let node: GlassboxNode;
let dir: { remove(): Promise<void> };
let served: OpenAPIV3_1.Document;

beforeAll(async () => {
  chain = await startTestChain();
  const d = await tempDir();
  dir = d;
  node = await startTestNode(chain, PROVIDER[0], d.dir);
  const target = {
    endpoint: node.url,
    name: 'the node',
    timeoutMs: 10_000,
    maxResponseBytes: DEFAULT_MAX_RESPONSE_BYTES,
  };
  served = (await call(target, routes.openapi, {})) as unknown as OpenAPIV3_1.Document;
});

afterAll(async () => {
  await node?.stop();
  await chain?.stop();
  await dir?.remove();
});

describe('GET /v1/openapi.json', () => {
  it('is valid OpenAPI 3.1', async () => {
    const validator = new Validator();
    const result = await validator.validate(served as never);
    expect(result.errors ?? [], JSON.stringify(result.errors, null, 2)).toEqual([]);
    expect(result.valid).toBe(true);
    expect(validator.version).toBe('3.1');
  });

  it('is docs/api/openapi.json, which the build writes (never edited by hand)', async () => {
    const file = JSON.parse(await readFile(new URL('../../docs/api/openapi.json', import.meta.url), 'utf8'));
    expect(served).toEqual(file);
  });

  it('declares binary bodies and answers with their media types and headers', () => {
    const infer = served.paths!['/v1/infer']!.post!;
    const body = infer.requestBody as OpenAPIV3_1.RequestBodyObject;
    expect(Object.keys(body.content)).toEqual(['application/json', 'application/octet-stream']);
    expect(infer.parameters).toContainEqual(
      expect.objectContaining({ name: 'glassbox-request', in: 'header' }),
    );
    const answer = infer.responses['200'] as OpenAPIV3_1.ResponseObject;
    expect(Object.keys(answer.content!)).toEqual(['application/json', 'application/octet-stream']);
    expect(Object.keys(answer.headers!)).toEqual(['glassbox-receipt']);
    const blob = served.paths!['/v1/blobs/{cid}']!.get!.responses['200'] as OpenAPIV3_1.ResponseObject;
    expect(Object.keys(blob.content!)).toEqual(['application/octet-stream']);
    const metrics = served.paths!['/metrics']!.get!.responses['200'] as OpenAPIV3_1.ResponseObject;
    expect(Object.keys(metrics.content!)).toEqual(['text/plain']);
    const problem = infer.responses.default as OpenAPIV3_1.ResponseObject;
    expect(Object.keys(problem.content!)).toEqual(['application/problem+json']);
  });

  it('names every route of the table, and the node serves each of them', async () => {
    const entries = Object.values(routes) as ApiRoute[];
    const documented = Object.entries(served.paths!).flatMap(([path, item]) =>
      Object.keys(item!).map((method) => `${method.toUpperCase()} ${path}`),
    );
    expect(documented.sort()).toEqual(
      entries.map((r) => `${r.method} ${r.path.replace(/:(\w+)/g, '{$1}')}`).sort(),
    );
    for (const route of entries) {
      const params = Object.fromEntries(
        [...route.path.matchAll(/:(\w+)/g)].map(([, name]) => [name!, `0x${'00'.repeat(32)}`]),
      );
      const res = await fetch(routeUrl(node.url, route, { params }), { method: route.method });
      const text = await res.text();
      expect(text, `${route.method} ${route.path}`).not.toMatch(/no route/);
    }
  });
});
