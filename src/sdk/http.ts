import type * as NodeHttpModule from 'node:http';
import type { Agent, ClientRequest, IncomingMessage } from 'node:http';

/*
 * The SDK's default fetch on Node: node:http with a keep-alive agent, answering a standard
 * Response whose body streams (its reader caps how much it takes). The global fetch (undici) costs
 * about 0.5 ms more per request on loopback here (1.4 vs 0.8 ms p50 for a 2 KB JSON round trip to
 * a bare node:http server, the same connection reused), which is a third of what the verified path
 * adds to a small model. Only what the SDK sends is supported: a string body, a ReadableStream of
 * bytes (a binary request, written chunk by chunk as the socket drains, chunked transfer encoding)
 * or none, plain-object headers, an abort signal. Elsewhere (a browser, a runtime without node:http) the global fetch is
 * used.
 */

type NodeHttp = typeof NodeHttpModule;

const http: NodeHttp | undefined =
  typeof process !== 'undefined' && process.versions?.node
    ? await import('node:http').catch(() => undefined)
    : undefined;

let agent: Agent | undefined;

/** A fetch for `http:` URLs over node:http with kept-alive connections; others go to the global fetch. */
export function createNodeFetch(): typeof fetch | undefined {
  if (!http) return undefined;
  const h = http;
  agent ??= new h.Agent({ keepAlive: true, noDelay: true, scheduling: 'lifo' });
  const keepAlive = agent;
  const nodeFetch = async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const url = typeof input === 'string' ? new URL(input) : input instanceof URL ? input : undefined;
    const body = init.body;
    if (
      !url ||
      url.protocol !== 'http:' ||
      (body !== undefined &&
        body !== null &&
        typeof body !== 'string' &&
        !(body instanceof ReadableStream)) ||
      (init.headers !== undefined && (Array.isArray(init.headers) || init.headers instanceof Headers))
    )
      return globalThis.fetch(input, init);
    const headers: Record<string, string> = { ...(init.headers as Record<string, string> | undefined) };
    if (typeof body === 'string') headers['content-length'] = String(Buffer.byteLength(body));
    const send = (retry: boolean): Promise<Response> =>
      new Promise((resolve, reject) => {
        const signal = init.signal ?? undefined;
        if (signal?.aborted) return reject(signal.reason);
        const req = h.request(url, { method: init.method ?? 'GET', headers, agent: keepAlive });
        const onAbort = () =>
          req.destroy(signal!.reason instanceof Error ? signal!.reason : new Error('aborted'));
        signal?.addEventListener('abort', onAbort, { once: true });
        const done = () => signal?.removeEventListener('abort', onAbort);
        req.on('error', (error: NodeJS.ErrnoException) => {
          done();
          // A kept-alive connection the server closed meanwhile: once more on a fresh one (Node's
          // advice). Not a streamed body: it was read once.
          if (
            retry &&
            !(body instanceof ReadableStream) &&
            req.reusedSocket &&
            error.code === 'ECONNRESET' &&
            !signal?.aborted
          )
            resolve(send(false));
          else reject(signal?.aborted ? signal.reason : error);
        });
        req.on('response', (res: IncomingMessage) => {
          const status = res.statusCode ?? 502;
          const out = new Headers();
          for (const [k, v] of Object.entries(res.headers))
            if (v !== undefined) out.set(k, Array.isArray(v) ? v.join(', ') : v);
          const nullBody = status === 204 || status === 304 || (status >= 100 && status < 200);
          if (nullBody) res.resume();
          // The body streams: its reader decides how much to take (src/protocol/body.ts caps it),
          // and the abort signal still applies while it is read.
          res.once('close', done);
          resolve(
            new Response(nullBody ? null : bodyStream(res), {
              status,
              statusText: res.statusMessage,
              headers: out,
            }),
          );
        });
        if (body instanceof ReadableStream)
          writeStream(req, body).catch((error: unknown) =>
            req.destroy(error instanceof Error ? error : new Error(String(error))),
          );
        else req.end(body ?? undefined);
      });
    return send(true);
  };
  return nodeFetch as typeof fetch;
}

/** Writes a request body from a web stream, waiting whenever the socket's buffer is full. */
async function writeStream(req: ClientRequest, body: ReadableStream<Uint8Array>): Promise<void> {
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    if (req.destroyed) return;
    if (!req.write(chunk))
      await new Promise<void>((resolve) => {
        const go = () => {
          req.off('drain', go).off('close', go);
          resolve();
        };
        req.once('drain', go).once('close', go);
      });
  }
  req.end();
}

/**
 * A response body as a web stream that pulls from the socket as it is read (paused while the
 * reader is behind), and closes the connection when the reader cancels: a reader that stops at its
 * size cap does not download the rest.
 */
function bodyStream(res: IncomingMessage): ReadableStream<Uint8Array> {
  let open = true; // enqueue, close and error throw once the stream is closed or cancelled
  const end = (finish: () => void) => {
    if (open) finish();
    open = false;
  };
  return new ReadableStream<Uint8Array>({
    start(controller) {
      res.on('data', (chunk: Buffer) => {
        if (!open) return;
        controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        if ((controller.desiredSize ?? 0) <= 0) res.pause();
      });
      res.once('end', () => end(() => controller.close()));
      res.once('error', (error) => end(() => controller.error(error)));
      // destroyed before its end (an abort, a reset): the reader must not wait for ever
      res.once('close', () => {
        if (!res.complete)
          end(() => controller.error(new Error('the connection closed before the body ended')));
      });
    },
    pull() {
      res.resume();
    },
    cancel() {
      open = false;
      res.destroy();
    },
  });
}
