import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNodeFetch } from '../../src/sdk/http.js';

/* The SDK's default fetch on Node (node:http, kept-alive connections) against a real server on loopback. */

let server: Server;
let base: string;
const ports = new Set<number>();

beforeAll(async () => {
  server = createServer((req, res) => {
    ports.add(req.socket.remotePort!);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/slow') return void setTimeout(() => res.end('late'), 2000);
      if (req.url === '/reset') return void req.socket.destroy();
      if (req.url === '/empty') return void res.writeHead(204).end();
      res.writeHead(req.url === '/missing' ? 404 : 200, {
        'content-type': 'application/json',
        'x-seen': 'yes',
      });
      res.end(
        JSON.stringify({
          method: req.method,
          body: Buffer.concat(chunks).toString(),
          type: req.headers['content-type'] ?? null,
        }),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

describe('createNodeFetch', () => {
  const fetch = createNodeFetch()!;

  it('answers a standard Response: status, headers, body', async () => {
    const res = await fetch(`${base}/echo`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"a":"ü"}',
    });
    expect(res.status).toBe(200);
    expect(res.ok).toBe(true);
    expect(res.headers.get('x-seen')).toBe('yes');
    expect(await res.json()).toEqual({ method: 'POST', body: '{"a":"ü"}', type: 'application/json' });
    const missing = await fetch(`${base}/missing`);
    expect(missing.status).toBe(404);
    expect(missing.ok).toBe(false);
    expect((await fetch(`${base}/empty`)).status).toBe(204);
  });

  it('keeps the connection alive between requests', async () => {
    ports.clear();
    for (let i = 0; i < 5; i++) await (await fetch(`${base}/echo`)).text();
    expect(ports.size).toBe(1);
  });

  it('fails with the socket error when the server is gone, and when it drops the connection', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    await expect(fetch(`http://127.0.0.1:${port}/`)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await expect(fetch(`${base}/reset`)).rejects.toMatchObject({ code: 'ECONNRESET' });
  });

  it('stops on abort with the signal reason', async () => {
    const started = Date.now();
    const aborted = fetch(`${base}/slow`, { signal: AbortSignal.timeout(50) });
    await expect(aborted).rejects.toMatchObject({ name: 'TimeoutError' });
    expect(Date.now() - started).toBeLessThan(1500);
    const ac = new AbortController();
    ac.abort(new Error('before'));
    await expect(fetch(`${base}/echo`, { signal: ac.signal })).rejects.toThrow('before');
  });
});
