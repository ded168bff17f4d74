import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { CID } from 'multiformats/cid';
import * as raw from 'multiformats/codecs/raw';
import { base58btc } from 'multiformats/bases/base58';
import { sha512 } from 'multiformats/hashes/sha2';
import { describe, expect, it } from 'vitest';
import { fileCid, isGlassboxError, type GlassboxError } from '../../src/protocol/index.js';
import { createFsStore, createMemoryStore, type BlobStore } from '../../src/store/index.js';
import { tempDir } from './temp-dir.js';

const utf8 = new TextEncoder();
const MiB = 1024 * 1024;

async function caught(promise: Promise<unknown>): Promise<GlassboxError> {
  try {
    await promise;
  } catch (error) {
    if (isGlassboxError(error)) return error;
    throw error;
  }
  throw new Error('expected a GlassboxError, but nothing was thrown');
}

async function all(iterable: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const item of iterable) out.push(item);
  return out.sort();
}

const backends: [string, () => Promise<BlobStore>][] = [
  ['filesystem', async () => createFsStore(await tempDir())],
  ['memory', async () => createMemoryStore()],
];

describe.each(backends)('the %s blob store', (_, open) => {
  it('stores bytes under their file CID and gives them back', async () => {
    const store = await open();
    const bytes = utf8.encode('hello glassbox');
    const cid = await store.put(bytes);
    expect(cid).toBe(await fileCid(bytes));
    expect(await store.has(cid)).toBe(true);
    expect(Buffer.compare(await store.get(cid), bytes)).toBe(0);
    expect(await all(store.list())).toEqual([cid]);
  });

  it('stores the same bytes once, whatever the number of puts', async () => {
    const store = await open();
    const bytes = utf8.encode('same');
    const [a, b] = await Promise.all([store.put(bytes), store.put(bytes)]);
    expect(a).toBe(b);
    expect(await store.put(bytes)).toBe(a);
    expect(await all(store.list())).toEqual([a]);
  });

  it('round-trips any bytes', async () => {
    const store = await open();
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 4096 }), async (bytes) => {
        const cid = await store.put(bytes);
        expect(Buffer.compare(await store.get(cid), bytes)).toBe(0);
      }),
      { numRuns: 50 },
    );
  });

  it('answers BLOB_NOT_FOUND, naming the CID, for a blob it does not hold', async () => {
    const store = await open();
    const cid = await fileCid(utf8.encode('never stored'));
    expect(await store.has(cid)).toBe(false);
    const error = await caught(store.get(cid));
    expect(error.code).toBe('BLOB_NOT_FOUND');
    expect(error.message).toContain(cid);
    expect(error.details).toMatchObject({ cid });
  });

  it('deletes blobs', async () => {
    const store = await open();
    const cid = await store.put(utf8.encode('short-lived'));
    expect(await store.delete(cid)).toBe(true);
    expect(await store.delete(cid)).toBe(false);
    expect(await store.has(cid)).toBe(false);
    expect((await caught(store.get(cid))).code).toBe('BLOB_NOT_FOUND');
  });

  it('accepts any encoding of a CIDv1 and answers in the canonical base32 one', async () => {
    const store = await open();
    const bytes = utf8.encode('encodings');
    const cid = await store.put(bytes);
    const base58 = CID.parse(cid).toString(base58btc);
    expect(base58).not.toBe(cid);
    expect(Buffer.compare(await store.get(base58), bytes)).toBe(0);
    expect(await store.has(base58)).toBe(true);
  });

  it('refuses, with CID_INVALID, strings that are not CIDs a blob can have', async () => {
    const store = await open();
    const sha512Cid = CID.createV1(raw.code, await sha512.digest(utf8.encode('x'))).toString();
    const dagCborCid = CID.createV1(0x71, CID.parse(await fileCid(utf8.encode('x'))).multihash).toString();
    const bad = [
      '',
      'not-a-cid',
      '../../etc/passwd',
      'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku/../../x',
      'QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH', // CIDv0
      sha512Cid,
      dagCborCid,
    ];
    for (const value of bad) {
      for (const call of [store.get(value), store.has(value), store.delete(value)]) {
        const error = await caught(call);
        expect(error.code, value).toBe('CID_INVALID');
      }
    }
  });
});

describe('the filesystem blob store', () => {
  it('lays blobs out as blobs/<two chars before the last>/<cid>, with no temporary files left', async () => {
    const dir = await tempDir();
    const store = createFsStore(dir);
    const cid = await store.put(utf8.encode('layout'));
    expect(store.pathOf(cid)).toBe(join(dir, 'blobs', cid.slice(-3, -1), cid));
    expect(await readdir(join(dir, 'blobs'))).toEqual([cid.slice(-3, -1)]);
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
    expect(await readFile(store.pathOf(cid), 'utf8')).toBe('layout');
  });

  it('refuses a blob with any one byte flipped, naming the CID and what it hashes to', async () => {
    const store = createFsStore(await tempDir());
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 1, maxLength: 2048 }),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        async (bytes, at, mask) => {
          const cid = await store.put(bytes);
          const flipped = bytes.slice();
          const position = at % bytes.length;
          flipped[position]! ^= mask;
          await writeFile(store.pathOf(cid), flipped);
          const error = await caught(store.get(cid));
          const actual = await fileCid(flipped);
          expect(error.code).toBe('BLOB_CORRUPT');
          expect(error.shortMessage).toBe(
            `blob ${cid} is corrupt: its ${bytes.length} bytes hash to ${actual}`,
          );
          expect(error.message).toContain(store.pathOf(cid));
          expect(error.details).toMatchObject({ cid, actual });
          // putting the original bytes again repairs the blob
          await store.put(bytes);
          expect(Buffer.compare(await store.get(cid), bytes)).toBe(0);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('refuses a multi-chunk blob flipped in its first or last chunk, and a truncated one', async () => {
    const store = createFsStore(await tempDir());
    const bytes = new Uint8Array(2 * MiB + 7).map((_, i) => (i * 31) & 0xff);
    const cid = await store.put(bytes);
    for (const position of [0, MiB - 1, MiB, bytes.length - 1]) {
      const flipped = bytes.slice();
      flipped[position]! ^= 0x80;
      await writeFile(store.pathOf(cid), flipped);
      expect((await caught(store.get(cid))).code).toBe('BLOB_CORRUPT');
    }
    await writeFile(store.pathOf(cid), bytes.subarray(0, bytes.length - 1));
    expect((await caught(store.get(cid))).code).toBe('BLOB_CORRUPT');
  });

  it('is shared by stores opened on the same directory, and lists only blobs', async () => {
    const dir = await tempDir();
    const a = createFsStore(dir);
    const cid = await a.put(utf8.encode('shared'));
    const b = createFsStore(dir);
    expect(await b.has(cid)).toBe(true);
    await writeFile(join(dir, 'blobs', cid.slice(-3, -1), 'stray-file'), 'x');
    await writeFile(join(dir, 'blobs', 'README'), 'x');
    expect(await all(b.list())).toEqual([cid]);
  });

  it('answers an empty list and no blobs for a directory that does not exist yet', async () => {
    const store = createFsStore(join(await tempDir(), 'not', 'yet'));
    expect(await all(store.list())).toEqual([]);
    expect(await store.has(await fileCid(new Uint8Array()))).toBe(false);
  });
});

describe('the memory blob store', () => {
  it('re-hashes on read too', async () => {
    const blobs = new Map<string, Uint8Array>();
    const store = createMemoryStore(blobs);
    const cid = await store.put(utf8.encode('in memory'));
    blobs.set(cid, utf8.encode('in memorx'));
    expect((await caught(store.get(cid))).code).toBe('BLOB_CORRUPT');
  });

  it('keeps its own copy of what was put and gives out copies', async () => {
    const store = createMemoryStore();
    const bytes = utf8.encode('mine');
    const cid = await store.put(bytes);
    bytes[0] = 0;
    const got = await store.get(cid);
    got[1] = 0;
    expect(new TextDecoder().decode(await store.get(cid))).toBe('mine');
  });
});
