import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readBody } from '../../src/protocol/body.js';
import { isGlassboxError } from '../../src/protocol/errors.js';
import { createNodeFetch } from '../../src/sdk/http.js';

/* The SDK's default fetch on Node (node:http, kept-alive connections) against a real server on loopback. */

let server: Server;
let base: string;
const ports = new Set<number>();
/** What /endless wrote before its client went away, and whether the client closed the connection. */
const endless = { written: 0, closed: false };
const MiB = 1024 * 1024;

/** 64 MiB in 64 KiB chunks, chunked (no content-length), as fast as the client reads. */
function writeEndless(res: ServerResponse): void {
  Object.assign(endless, { written: 0, closed: false });
  res.writeHead(200, { 'content-type': 'application/json' });
  res.on('close', () => (endless.closed = true));
  const chunk = Buffer.alloc(64 * 1024, 0x20);
  const write = () => {
    while (endless.written < 64 * MiB && !res.destroyed) {
      endless.written += chunk.length;
      if (!res.write(chunk)) return void res.once('drain', write);
    }
    res.end();
  };
  write();
}

beforeAll(async () => {
  server = createServer((req, res) => {
    ports.add(req.socket.remotePort!);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/slow') return void setTimeout(() => res.end('late'), 2000);
      if (req.url === '/reset') return void req.socket.destroy();
      if (req.url === '/empty') return void res.writeHead(204).end();
      if (req.url === '/endless') return writeEndless(res);
      if (req.url === '/trickle') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('first ');
        return void setTimeout(() => res.end('second'), 50);
      }
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

  it('streams the body: a capped reader stops early and the rest is never sent', async () => {
    const res = await fetch(`${base}/endless`);
    const error = await readBody(res, { maxBytes: MiB, from: 'the test server' }).catch((e: unknown) => e);
    expect(isGlassboxError(error, 'RESPONSE_TOO_LARGE')).toBe(true);
    await expect.poll(() => endless.closed).toBe(true);
    // socket buffers hold a few MiB at most: nowhere near the 64 MiB it would have sent
    expect(endless.written).toBeLessThan(16 * MiB);
  });

  it('reads a body that arrives in parts; an abort while reading it stops the read', async () => {
    expect(await (await fetch(`${base}/trickle`)).text()).toBe('first second');
    const ac = new AbortController();
    const res = await fetch(`${base}/endless`, { signal: ac.signal });
    const reader = res.body!.getReader();
    await reader.read();
    ac.abort(new Error('enough'));
    await expect(
      (async () => {
        for (;;) if ((await reader.read()).done) return 'ended';
      })(),
    ).rejects.toThrow();
  });
});
