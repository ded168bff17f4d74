import { describe, expect, it } from 'vitest';
import { readBody, readJsonBody } from '../../src/protocol/body.js';
import { failure } from '../support/wire.js';

/* The capped body reader over web streams, as fetch hands them out (src/protocol/body.ts). */

/** A Response whose body is `chunks`, counting how many chunks were pulled and whether it was cancelled. */
function streamed(chunks: Uint8Array[], headers: Record<string, string> = {}) {
  const seen = { pulled: 0, cancelled: false };
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      const next = chunks[seen.pulled++];
      if (next) controller.enqueue(next);
      else controller.close();
    },
    cancel() {
      seen.cancelled = true;
    },
  });
  return { response: new Response(body, { headers }), seen };
}

const bytes = (n: number, fill = 0x61) => new Uint8Array(n).fill(fill);
const from = 'provider 0xabc';

describe('readBody', () => {
  it('reads every chunk up to the cap, the cap included', async () => {
    const { response } = streamed([bytes(3), bytes(4, 0x62), bytes(3, 0x63)]);
    expect(new TextDecoder().decode(await readBody(response, { maxBytes: 10, from }))).toBe('aaabbbbccc');
  });

  it('stops at the chunk that passes the cap and cancels the rest', async () => {
    const { response, seen } = streamed([bytes(4), bytes(4), bytes(4), bytes(4), bytes(4)]);
    const error = await failure(readBody(response, { maxBytes: 10, from }));
    expect(error.code).toBe('RESPONSE_TOO_LARGE');
    expect(error.field).toBe('body');
    expect(error.shortMessage).toBe('provider 0xabc answered more than 10 bytes (it sent more)');
    expect(error.details).toEqual({ maxBytes: 10 });
    expect(seen.cancelled).toBe(true);
    expect(seen.pulled).toBeLessThanOrEqual(4);
  });

  it('refuses a declared content-length over the cap without reading', async () => {
    const { response, seen } = streamed([bytes(4)], { 'content-length': '1000' });
    const error = await failure(readBody(response, { maxBytes: 10, from }));
    expect(error.shortMessage).toBe('provider 0xabc answered more than 10 bytes (it declares 1000 bytes)');
    expect(seen.cancelled).toBe(true);
  });

  it('an empty body is empty', async () => {
    expect(await readBody(new Response(null), { maxBytes: 10, from })).toEqual(new Uint8Array(0));
    expect(await readJsonBody(new Response(''), { maxBytes: 10, from })).toBeUndefined();
  });
});

describe('readJsonBody', () => {
  it('parses JSON within the cap; anything else is PROVIDER_ERROR on the body', async () => {
    expect(await readJsonBody(new Response('{"a":[1,"ü"]}'), { maxBytes: 100, from })).toEqual({
      a: [1, 'ü'],
    });
    const error = await failure(
      readJsonBody(new Response('<html>', { status: 502 }), { maxBytes: 100, from }),
    );
    expect(error.code).toBe('PROVIDER_ERROR');
    expect(error.field).toBe('body');
    expect(error.shortMessage).toBe('provider 0xabc answered a body that is not JSON');
    expect(error.details).toEqual({ status: 502 });
    expect((await failure(readJsonBody(new Response('[1,2,3]'), { maxBytes: 4, from }))).code).toBe(
      'RESPONSE_TOO_LARGE',
    );
  });
});
