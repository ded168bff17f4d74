import { describe, expect, it } from 'vitest';
import { isGlassboxError } from '../../src/protocol/errors.js';
import { sseData } from '../../src/sdk/llm-transport.js';

/*
 * The SDK's server-sent events reader (src/sdk/llm-transport.ts) against the framing rules of the
 * WHATWG spec: any line ending, a line or a CRLF split across reads, comments, multi-line data,
 * an unterminated last event, and the size cap.
 */

const encoder = new TextEncoder();

/** A body delivering `parts` as separate reads. */
function body(parts: readonly (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream({
    pull(controller) {
      if (i >= parts.length) return controller.close();
      const p = parts[i++]!;
      controller.enqueue(typeof p === 'string' ? encoder.encode(p) : p);
    },
  });
}

async function events(parts: readonly (string | Uint8Array)[], maxBytes = 1 << 20): Promise<string[]> {
  const out: string[] = [];
  for await (const data of sseData(body(parts), maxBytes, 'test')) out.push(data);
  return out;
}

describe('sseData', () => {
  it('reads events ended by LF, CRLF or CR, whatever the reads split', async () => {
    expect(await events(['data: a\n\ndata: b\r\n\r\ndata: c\r\rdata: [DONE]\n\n'])).toEqual([
      'a',
      'b',
      'c',
      '[DONE]',
    ]);
    // a CRLF split between two reads is one line end, not two (which would dispatch early)
    expect(await events(['data: x\r', '\ndata: y\r\n', '\r\n'])).toEqual(['x\ny']);
    expect(await events(['da', 'ta: {"a"', ':1}\n', '\n'])).toEqual(['{"a":1}']);
  });

  it('joins data lines, skips comments and other fields, keeps a space after the first', async () => {
    expect(await events([': keep-alive\n\nevent: x\nid: 3\ndata:one\ndata:  two\n\n'])).toEqual([
      'one\n two',
    ]);
  });

  it('decodes UTF-8 split across reads', async () => {
    const bytes = encoder.encode('data: 该怎么办\n\n');
    expect(await events([bytes.slice(0, 8), bytes.slice(8)])).toEqual(['该怎么办']);
  });

  it('does not dispatch an event the stream ends inside', async () => {
    expect(await events(['data: done\n\ndata: cut'])).toEqual(['done']);
  });

  it('refuses a stream longer than its cap', async () => {
    const error = await events(['data: 0123456789\n\n', 'data: 0123456789\n\n'], 24).catch((e: unknown) => e);
    expect(isGlassboxError(error, 'RESPONSE_TOO_LARGE')).toBe(true);
  });
});
