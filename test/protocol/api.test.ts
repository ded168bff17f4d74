import { describe, expect, it } from 'vitest';
import {
  parseBatchResponse,
  parseEvidenceResponse,
  readBatchPages,
  type BatchResponse,
} from '../../src/protocol/api.js';
import { isGlassboxError, type GlassboxError } from '../../src/protocol/errors.js';
import { failure, h, storedReceipt } from '../support/wire.js';

/*
 * The schemas of what providers answer, and the batch page reader: what a verifier does with a
 * listing that is garbage, or pages that lie about where they are (src/protocol/api.ts).
 */

const root = h('root');

const stored = (i: number) => storedReceipt(i, { batch: { root, proof: [h('sibling')], id: '7' } });

/**
 * A provider serving `count` receipts in pages of `size`, or whatever `tamper` makes of a page, read
 * as the typed client reads it (parsed with the page's schema).
 */
function pages(count: number, size: number, tamper: (page: BatchResponse) => unknown = (p) => p) {
  const asked: number[] = [];
  const fetchPage = async (offset: number) => {
    asked.push(offset);
    const receipts = Array.from({ length: Math.min(size, count - offset) }, (_, i) => stored(offset + i));
    return parseBatchResponse(JSON.parse(JSON.stringify(tamper({ root, count, offset, receipts }))));
  };
  return { fetchPage, asked };
}

describe('parseBatchResponse', () => {
  it('parses a page: receipts with bigints and hex as they came; unknown fields are ignored', () => {
    const page = parseBatchResponse({ root, count: 2, offset: 0, receipts: [stored(0)], extra: 1 });
    expect(page.receipts[0]!.receipt.receipt.price).toBe(1000n);
    expect(page.receipts[0]!.receipt.receipt.requestId).toBe(h('r0'));
    expect(page.receipts[0]!.batch!.id).toBe('7');
    expect('extra' in page).toBe(false);
  });

  it('names the offending field with PROVIDER_ERROR', () => {
    const bad = (value: unknown, field: string) => {
      const error = (() => {
        try {
          parseBatchResponse(value);
        } catch (e) {
          return e;
        }
      })();
      expect(isGlassboxError(error, 'PROVIDER_ERROR'), JSON.stringify(value).slice(0, 80)).toBe(true);
      expect((error as GlassboxError).field).toBe(field);
    };
    const r = stored(0);
    bad('<html>', 'response');
    bad({ root, count: 1, offset: 0, receipts: 'all of them' }, 'response.receipts');
    bad(
      { root, count: 1, offset: 0, receipts: [{ ...r, inputs: 'not base64!' }] },
      'response.receipts.0.inputs',
    );
    bad(
      { root, count: 1, offset: 0, receipts: [{ ...r, receipt: { ...r.receipt, signature: 'x' } }] },
      'response.receipts.0.receipt.signature',
    );
    bad({ root: '0x12', count: 1, offset: 0, receipts: [] }, 'response.root');
    bad({ root, count: 1, offset: 1, receipts: [r] }, 'response.receipts');
    bad({ root, count: 100, offset: 0, receipts: Array.from({ length: 65 }, () => r) }, 'response.receipts');
  });

  it('evidence: inputs are required base64', () => {
    expect(parseEvidenceResponse({ inputs: 'AAEC' }).inputs).toBe('AAEC');
    expect(() => parseEvidenceResponse({ receipt: stored(0).receipt })).toThrow(/response.inputs/);
  });
});

describe('readBatchPages', () => {
  it('reads a batch page by page, advancing by what each page held', async () => {
    const { fetchPage, asked } = pages(10, 4);
    const listing = await readBatchPages({ root, count: 10 }, fetchPage);
    expect(listing.receipts.map((r) => r.receipt.receipt.requestId)).toEqual(
      Array.from({ length: 10 }, (_, i) => h(`r${i}`)),
    );
    expect(asked).toEqual([0, 4, 8]);
    expect((await readBatchPages({ root, count: 0 }, fetchPage)).receipts).toEqual([]);
  });

  it('refuses pages that do not add up: another root, another count, another offset, an empty page', async () => {
    const cases: [(p: BatchResponse) => unknown, string, RegExp][] = [
      [(p) => ({ ...p, root: h('other') }), 'response.root', /not the committed/],
      [(p) => ({ ...p, count: 1_000_000 }), 'response.count', /but 10 receipts were committed/],
      [(p) => ({ ...p, offset: 0 }), 'response.offset', /is 0, not 4/],
      [
        (p) => (p.offset > 0 ? { ...p, receipts: [] } : p),
        'response.receipts',
        /empty before the batch's end/,
      ],
    ];
    for (const [tamper, field, message] of cases) {
      const error = await failure(readBatchPages({ root, count: 10 }, pages(10, 4, tamper).fetchPage));
      expect(error.code).toBe('PROVIDER_ERROR');
      expect(error.field).toBe(field);
      expect(error.shortMessage).toMatch(message);
    }
  });
});
