import { BATCH_PAGE_DATA_BYTES, BATCH_PAGE_MAX } from './api.js';
import { GlassboxError } from './errors.js';
import { MAX_DATA_BYTES } from './limits.js';

/*
 * Reading an answer without trusting its size (audit M-3). `response.json()` and `.text()` buffer
 * whatever arrives, so one provider, peer or evidence URI answering gigabytes could exhaust its
 * reader's memory. These read a fetch Response's body stream chunk by chunk and stop past
 * `maxBytes`, cancelling the rest (which closes the connection). Pure over the web streams API,
 * so the SDK and the node's verifier and committee member share them.
 */

/** A stored receipt's JSON besides its data: the signed receipt, its proof and trace (~2.5 KiB). */
const STORED_RECEIPT_JSON = 4096;

/**
 * The default cap on one answer: a full batch page, its data at most the larger of
 * BATCH_PAGE_DATA_BYTES and the most any chain lets one receipt carry (MAX_DATA_BYTES), 4/3 of it
 * in base64, and each receipt's JSON besides: about 21.6 MiB. A page is the largest answer a
 * provider sends besides an inference answer's outputs in JSON, which for the largest receipts
 * take more: those travel in the binary transport. A reader expecting more says so.
 */
export const DEFAULT_MAX_RESPONSE_BYTES =
  Math.ceil((Math.max(BATCH_PAGE_DATA_BYTES, MAX_DATA_BYTES) * 4) / 3) + BATCH_PAGE_MAX * STORED_RECEIPT_JSON;

export type ReadBodyOptions = {
  /** The most bytes read; past them the read stops with RESPONSE_TOO_LARGE. */
  readonly maxBytes: number;
  /** Who answered, for messages: `provider 0x…`, a URL. */
  readonly from: string;
};

/** The body's bytes, at most `maxBytes` of them; RESPONSE_TOO_LARGE (field `body`) past that. */
export async function readBody(response: Response, options: ReadBodyOptions): Promise<Uint8Array> {
  // A declared length over the cap is refused before a byte is read.
  const declared = Number(response.headers.get('content-length') ?? 0);
  if (declared > options.maxBytes) {
    await response.body?.cancel().catch(() => undefined);
    throw tooLarge(options, `declares ${declared} bytes`);
  }
  if (!response.body) return new Uint8Array(0);
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > options.maxBytes) {
      await reader.cancel().catch(() => undefined);
      throw tooLarge(options, 'sent more');
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0]!;
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  return bytes;
}

/**
 * The body as JSON, read with `readBody`'s cap; PROVIDER_ERROR (field `body`) when it is not
 * JSON. An empty body is `undefined`.
 */
export async function readJsonBody(response: Response, options: ReadBodyOptions): Promise<unknown> {
  const text = new TextDecoder().decode(await readBody(response, options));
  if (text.length === 0) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new GlassboxError('PROVIDER_ERROR', `${options.from} answered a body that is not JSON`, {
      field: 'body',
      details: { status: response.status },
    });
  }
}

function tooLarge(options: ReadBodyOptions, what: string): GlassboxError {
  return new GlassboxError(
    'RESPONSE_TOO_LARGE',
    `${options.from} answered more than ${options.maxBytes} bytes (it ${what})`,
    { field: 'body', details: { maxBytes: options.maxBytes } },
  );
}
