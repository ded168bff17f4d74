import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { keccak256, toHex, type Hex } from 'viem';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openNodeDb, type NewAnswer, type NodeDb } from '../../src/node/db.js';
import { createGroupCommit } from '../../src/node/group-commit.js';
import { signReceipt, signedReceiptToJson, ZERO_HASH } from '../../src/protocol/receipt.js';
import { privateKeyToSigner } from '../../src/protocol/secp256k1.js';
import { tempDir } from './support.js';

/*
 * Group commit (src/node/group-commit.ts) against a real SQLite file: answers committed while a
 * sync runs share the next one, and none is released before its receipt is committed and synced,
 * which the order of the calls, a second connection to the file (it sees committed rows only) and
 * a killed process show.
 */

const signer = privateKeyToSigner(keccak256(toHex('group-commit signer')));
const CLIENT = privateKeyToSigner(keccak256(toHex('group-commit client'))).address;
const domain = { chainId: 31337, verifyingContract: signer.address };
const MODEL = 'bafkreigroupcommitmodel';

async function answer(tag: string): Promise<NewAnswer> {
  const requestId = keccak256(toHex(`group-commit ${tag}`));
  const receipt = {
    requestId,
    provider: signer.address,
    client: CLIENT,
    model: keccak256(toHex(MODEL)),
    inputHash: keccak256(toHex(`in ${tag}`)),
    outputHash: keccak256(toHex(`out ${tag}`)),
    paramsHash: ZERO_HASH,
    runtime: ZERO_HASH,
    traceRoot: ZERO_HASH,
    price: 5n,
    timestamp: 1n,
  };
  return {
    requestId,
    client: CLIENT,
    model: MODEL,
    inputHash: receipt.inputHash,
    leaf: keccak256(requestId),
    receipt: signedReceiptToJson(await signReceipt(signer, receipt, domain)),
    price: 5n,
    createdAt: Date.now(),
    inputs: new Uint8Array([1, 2, 3]),
    outputs: new Uint8Array([4, 5]),
  };
}

let dir: Awaited<ReturnType<typeof tempDir>>;
let db: NodeDb;
let reader: Database.Database;
const committed = (requestId: Hex) =>
  reader.prepare('SELECT 1 FROM receipts WHERE request_id = ?').get(requestId.toLowerCase()) !== undefined;

beforeEach(async () => {
  dir = await tempDir('glassbox-group-commit-');
  db = openNodeDb(join(dir.dir, 'node.sqlite'), signer.address);
  // A second connection: in WAL mode it sees only what another connection has committed.
  reader = new Database(join(dir.dir, 'node.sqlite'), { readonly: true });
});

afterEach(async () => {
  reader?.close();
  db?.close();
  await dir?.remove();
});

describe('group commit of receipts', () => {
  it('answers committed while a sync runs share the next one, and each is released only after a sync that began after its commit', async () => {
    const events: string[] = [];
    const watched: NodeDb = {
      ...db,
      recordAnswer: (a, vouchers) => {
        db.recordAnswer(a, vouchers);
        events.push(committed(a.requestId) ? 'commit' : 'commit unseen');
      },
      syncAnswers: async () => {
        events.push('sync');
        await db.syncAnswers();
        events.push('synced');
      },
    };
    const receipts = createGroupCommit({ db: watched });
    const answers = await Promise.all(Array.from({ length: 16 }, (_, i) => answer(`turn ${i}`)));
    await Promise.all(answers.map((a, i) => receipts.record(a).then(() => events.push(`released ${i}`))));
    const at = (event: string) => events.indexOf(event);
    // the first answer's sync starts at once; the 15 committed meanwhile share the second
    expect(events.filter((e) => e.startsWith('commit'))).toEqual(Array(16).fill('commit'));
    expect(events.filter((e) => e === 'sync')).toHaveLength(2);
    expect(at('released 0')).toBeGreaterThan(at('synced'));
    const secondSync = events.indexOf('sync', at('sync') + 1);
    expect(secondSync).toBeGreaterThan(events.lastIndexOf('commit'));
    for (let i = 1; i < 16; i++) expect(at(`released ${i}`)).toBeGreaterThan(events.lastIndexOf('synced'));
    expect(db.getAccount(CLIENT).delivered).toBe(16n * 5n);
  });

  it('answers committed while a slow sync runs wait for the next one, and a failed sync releases nothing', async () => {
    let syncs = 0;
    let failSync = false;
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    const receipts = createGroupCommit({
      db: {
        ...db,
        syncAnswers: async () => {
          if (++syncs === 1) await gate; // the first sync is slow
          await db.syncAnswers();
          if (failSync) throw new Error('fdatasync said EIO');
        },
      },
    });
    const [a, b, c] = [await answer('first'), await answer('second'), await answer('third')];
    const released: string[] = [];
    const first = receipts.record(a).then(() => released.push('first'));
    // the first answer is committed and its sync waits at the gate; the others are committed, and wait
    const rest = [b, c].map((x, i) => receipts.record(x).then(() => released.push(`later ${i}`)));
    await new Promise((resolve) => setImmediate(resolve));
    expect([committed(b.requestId), syncs, released]).toEqual([true, 1, []]);
    openGate();
    await Promise.all([first, ...rest]);
    expect([syncs, released]).toEqual([2, ['first', 'later 0', 'later 1']]);

    failSync = true;
    await expect(receipts.record(await answer('unsynced'))).rejects.toThrow('fdatasync said EIO');
  });

  it('an answer whose request id is already stored is refused alone; the others are stored', async () => {
    const receipts = createGroupCommit({ db });
    const [first, second] = [await answer('a'), await answer('b')];
    await receipts.record(first);
    const results = await Promise.allSettled([receipts.record(second), receipts.record({ ...first })]);
    expect(results[0]).toEqual({ status: 'fulfilled', value: undefined });
    expect(results[1]).toMatchObject({
      status: 'rejected',
      reason: { code: 'SQLITE_CONSTRAINT_UNIQUE' },
    });
    expect(committed(second.requestId)).toBe(true);
    // charged once each, not for the refused duplicate
    expect(db.getAccount(CLIENT).delivered).toBe(10n);
  });

  it('writes the vouchers handed over with each answer, the best of each client, even when the answer is refused', async () => {
    const voucher = (amount: bigint) => ({
      voucher: { client: CLIENT, provider: signer.address, amount },
      signature: `0x${'22'.repeat(65)}` as Hex,
    });
    const handedOver = [[voucher(77n)], [voucher(50n)], [voucher(90n)]];
    const receipts = createGroupCommit({ db, vouchers: () => handedOver.shift() ?? [] });
    const voucherHeld = () =>
      reader.prepare('SELECT voucher_amount FROM clients WHERE client = ?').get(CLIENT);
    const first = await answer('with a voucher');
    await receipts.record(first);
    expect(voucherHeld()).toEqual({ voucher_amount: '77' });
    await receipts.record(await answer('with a lower voucher'));
    expect(voucherHeld()).toEqual({ voucher_amount: '77' });
    await expect(receipts.record({ ...first })).rejects.toMatchObject({ code: 'SQLITE_CONSTRAINT_UNIQUE' });
    expect(voucherHeld()).toEqual({ voucher_amount: '90' });
    expect(db.getAccount(CLIENT).delivered).toBe(10n);
  });

  it('an answer that cannot be written is refused, and nothing of it is stored', async () => {
    const receipts = createGroupCommit({ db });
    const a = await answer('x');
    db.close();
    await expect(receipts.record(a)).rejects.toThrow('not open');
    db = openNodeDb(join(dir.dir, 'node.sqlite'), signer.address);
    expect(committed(a.requestId)).toBe(false);
  });

  it('a process killed mid-stream has committed every answer it had released', async () => {
    // The child records answers 8 at a time through the built group commit (dist/, as the node
    // runs it) and prints each request id once `record` resolves; it is killed without warning.
    const root = fileURLToPath(new URL('../..', import.meta.url));
    const path = join(dir.dir, 'crash.sqlite');
    const script = `
      const { openNodeDb } = await import(${JSON.stringify(join(root, 'dist/node/db.js'))});
      const { createGroupCommit } = await import(${JSON.stringify(join(root, 'dist/node/group-commit.js'))});
      const db = openNodeDb(${JSON.stringify(path)}, ${JSON.stringify(signer.address)});
      const receipts = createGroupCommit({ db });
      const template = JSON.parse(process.argv[1]);
      for (let n = 0; ; n += 8)
        await Promise.all(Array.from({ length: 8 }, async (_, i) => {
          const requestId = '0x' + (n + i).toString(16).padStart(64, '0');
          await receipts.record({ ...template, requestId, price: 5n, inputs: new Uint8Array([1]), outputs: new Uint8Array([2]) });
          process.stdout.write(requestId + '\\n');
        }));`;
    const { price: _price, inputs: _inputs, outputs: _outputs, ...template } = await answer('crash');
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, JSON.stringify(template)], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const released: string[] = [];
    const exited = new Promise((resolve) => child.once('exit', resolve));
    for await (const line of createInterface({ input: child.stdout })) {
      released.push(line);
      if (released.length === 200) child.kill('SIGKILL');
    }
    expect(await exited).toBeNull(); // killed by the signal, not exited
    const after = new Database(path, { readonly: true });
    try {
      const missing = released.filter(
        (id) => after.prepare('SELECT 1 FROM receipts WHERE request_id = ?').get(id) === undefined,
      );
      expect(released.length).toBeGreaterThanOrEqual(200);
      expect(missing).toEqual([]);
    } finally {
      after.close();
    }
  }, 30_000);
});
