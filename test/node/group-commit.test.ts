import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { keccak256, toHex, type Hex } from 'viem';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openNodeDb, type NewAnswer, type NodeDb } from '../../src/node/db.js';
import { createGroupCommit } from '../../src/node/group-commit.js';
import { signReceipt, signedReceiptToJson, ZERO_HASH } from '../../src/protocol/receipt.js';
import { privateKeyToSigner } from '../../src/protocol/secp256k1.js';
import { tempDir } from './support.js';

/*
 * Group commit (src/node/group-commit.ts) against a real SQLite file: answers recorded in one turn
 * of the event loop share one transaction, and none is released before its receipt is committed,
 * which a second connection to the file (it sees committed rows only) and a killed process show.
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
let logged: string[];
const log = () => pino({}, { write: (line: string) => void logged.push(line) });
const committed = (requestId: Hex) =>
  reader.prepare('SELECT 1 FROM receipts WHERE request_id = ?').get(requestId.toLowerCase()) !== undefined;

beforeEach(async () => {
  dir = await tempDir('glassbox-group-commit-');
  db = openNodeDb(join(dir.dir, 'node.sqlite'), signer.address);
  // A second connection: in WAL mode it sees only what another connection has committed.
  reader = new Database(join(dir.dir, 'node.sqlite'), { readonly: true });
  logged = [];
});

afterEach(async () => {
  reader?.close();
  db?.close();
  await dir?.remove();
});

describe('group commit of receipts', () => {
  it('answers recorded in one turn share one transaction, and each is released only once its row is committed', async () => {
    const groups: number[] = [];
    const counting: NodeDb = {
      ...db,
      recordAnswers: (answers, alongside) => {
        groups.push(answers.length);
        return db.recordAnswers(answers, alongside);
      },
    };
    const receipts = createGroupCommit({ db: counting, log: log() });
    const answers = await Promise.all(Array.from({ length: 16 }, (_, i) => answer(`turn ${i}`)));
    const seenAtRelease: boolean[] = [];
    const recorded = answers.map((a) =>
      receipts.record(a).then(() => seenAtRelease.push(committed(a.requestId))),
    );
    // Nothing is written in the turn the answers arrive in.
    expect(answers.some((a) => committed(a.requestId))).toBe(false);
    await Promise.all(recorded);
    expect(groups).toEqual([16]);
    expect(seenAtRelease).toEqual(Array(16).fill(true));
    expect(db.getAccount(CLIENT).delivered).toBe(16n * 5n);

    // A later turn is a group of its own.
    const later = await answer('later');
    await receipts.record(later);
    expect(groups).toEqual([16, 1]);
    expect(committed(later.requestId)).toBe(true);
  });

  it('an answer whose request id is already stored fails alone; the rest of its group is committed', async () => {
    const receipts = createGroupCommit({ db, log: log() });
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

  it('writes what `alongside` writes in the same transaction, and a failure there loses no receipt', async () => {
    const voucher = {
      voucher: { client: CLIENT, provider: signer.address, amount: 77n },
      signature: `0x${'22'.repeat(65)}` as Hex,
    };
    let fail = false;
    const receipts = createGroupCommit({
      db,
      log: log(),
      alongside: () => {
        if (fail) throw new Error('disk said no');
        db.offerVoucher(voucher);
      },
    });
    const a = await answer('with a voucher');
    const pending = receipts.record(a);
    expect(db.getAccount(CLIENT).voucher).toBeUndefined();
    await pending;
    expect(reader.prepare('SELECT voucher_amount FROM clients WHERE client = ?').get(CLIENT)).toEqual({
      voucher_amount: '77',
    });

    fail = true;
    const b = await answer('alongside fails');
    await receipts.record(b);
    expect(committed(b.requestId)).toBe(true);
    expect(logged.join('')).toContain('disk said no');
  });

  it('a commit that fails rejects every answer of its group', async () => {
    const receipts = createGroupCommit({ db, log: log() });
    const answers = [await answer('x'), await answer('y')];
    const recorded = answers.map((a) => receipts.record(a));
    db.close(); // before the group's turn comes
    for (const r of await Promise.allSettled(recorded)) expect(r.status).toBe('rejected');
    db = openNodeDb(join(dir.dir, 'node.sqlite'), signer.address);
    expect(answers.some((a) => committed(a.requestId))).toBe(false);
  });

  it('a process killed mid-stream has committed every answer it had released', async () => {
    // The child records answers 8 at a time through the built group commit (dist/, as the node
    // runs it) and prints each request id once `record` resolves; it is killed without warning.
    const root = fileURLToPath(new URL('../..', import.meta.url));
    const path = join(dir.dir, 'crash.sqlite');
    const script = `
      const { openNodeDb } = await import(${JSON.stringify(join(root, 'dist/node/db.js'))});
      const { createGroupCommit } = await import(${JSON.stringify(join(root, 'dist/node/group-commit.js'))});
      const { default: pino } = await import('pino');
      const db = openNodeDb(${JSON.stringify(path)}, ${JSON.stringify(signer.address)});
      const receipts = createGroupCommit({ db, log: pino({ level: 'silent' }) });
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
