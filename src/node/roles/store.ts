import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Address, Hex } from 'viem';
import type { ChallengeKind } from '../../chain/index.js';
import type { SignedReceiptJson } from '../../protocol/receipt.js';

/*
 * What the node's roles must not forget across a restart, in their own SQLite file (WAL,
 * synchronous=FULL): how far each has read the chain (the event reader's cursors), the batches the
 * verifier is checking, what it sampled and found, the evidence it serves for its challenges, each
 * committee duty with the vote and salt it committed, written BEFORE the commit transaction is
 * sent, so that a member restarted between commit and reveal still reveals, and the challenges
 * against this provider whose committee it still has to draw.
 */

const SCHEMA = `
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, block TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
  batch_id TEXT PRIMARY KEY,
  provider TEXT NOT NULL,
  root TEXT NOT NULL,
  count INTEGER NOT NULL,
  block TEXT NOT NULL,
  seen_at INTEGER NOT NULL,
  done INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS samples (
  receipt_hash TEXT PRIMARY KEY,
  batch_id TEXT NOT NULL,
  provider TEXT NOT NULL,
  outcome TEXT NOT NULL,
  detail TEXT NOT NULL,
  compute_ms REAL NOT NULL DEFAULT 0,
  challenge_id TEXT,
  at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS evidence (
  receipt_hash TEXT PRIMARY KEY,
  receipt TEXT NOT NULL,
  inputs BLOB NOT NULL,
  outputs BLOB
);
CREATE TABLE IF NOT EXISTS challenges (
  challenge_id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  receipt_hash TEXT NOT NULL,
  provider TEXT NOT NULL,
  opened_at INTEGER NOT NULL,
  step INTEGER,
  batch TEXT,
  settled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS duties (
  challenge_id TEXT PRIMARY KEY,
  -- the decision: 1 guilty, 0 innocent, -1 abstain (could not judge: nothing is committed)
  guilty INTEGER,
  salt TEXT,
  detail TEXT,
  compute_ms REAL NOT NULL DEFAULT 0,
  committed INTEGER NOT NULL DEFAULT 0,
  revealed INTEGER NOT NULL DEFAULT 0,
  settled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS draws (challenge_id TEXT PRIMARY KEY);
`;

/** What checking a sampled receipt found. */
export type SampleOutcome = 'match' | 'mismatch' | 'unavailable' | 'skipped';

export type Sample = {
  readonly receiptHash: Hex;
  readonly batchId: bigint;
  readonly provider: Address;
  readonly outcome: SampleOutcome;
  readonly detail: string;
  readonly computeMs: number;
  readonly challengeId: bigint | undefined;
  readonly at: number;
};

export type PendingBatch = {
  readonly batchId: bigint;
  readonly provider: Address;
  readonly root: Hex;
  readonly count: number;
  readonly block: bigint;
  readonly seenAt: number;
};

export type OpenedChallenge = {
  readonly challengeId: bigint;
  readonly kind: ChallengeKind;
  /** The receipt struct hash; for `unavailable-batch`, the batch root. */
  readonly receiptHash: Hex;
  readonly provider: Address;
  readonly openedAt: number;
  /** The first divergent trace step the challenge proved, if any. */
  readonly step: number | undefined;
  /** Where the receipt sits (availability challenges): to challenge it once its data is public. */
  readonly batch?: { readonly id: bigint; readonly proof: readonly Hex[] };
  readonly settled: boolean;
};

/**
 * What a member decided: a vote to commit (with the salt that hides it until the reveal), or an
 * abstention when it could not judge: it commits nothing, and pays the vote penalty like any
 * member that does not reveal, which is why "cannot judge" is never an innocent vote (audit C-3).
 */
export type Decision =
  | { readonly kind: 'vote'; readonly guilty: boolean; readonly salt: Hex; readonly detail: string }
  | { readonly kind: 'abstain'; readonly detail: string };

export type Duty = {
  readonly challengeId: bigint;
  /** Undefined until the member has judged. */
  readonly decision: Decision | undefined;
  readonly computeMs: number;
  readonly committed: boolean;
  readonly revealed: boolean;
  readonly settled: boolean;
};

export type Evidence = {
  /** Absent when the receipt came from chain (published in an availability answer, unsigned). */
  readonly receipt: SignedReceiptJson | undefined;
  readonly inputs: Uint8Array;
  readonly outputs: Uint8Array | undefined;
};

export type RoleStore = ReturnType<typeof openRoleStore>;

function batchFromJson(text: string): { id: bigint; proof: Hex[] } {
  const { id, proof } = JSON.parse(text) as { id: string; proof: Hex[] };
  return { id: BigInt(id), proof };
}

export function openRoleStore(path: string) {
  mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec(SCHEMA);

  type RawBatch = {
    batch_id: string;
    provider: string;
    root: string;
    count: number;
    block: string;
    seen_at: number;
  };
  type RawSample = {
    receipt_hash: string;
    batch_id: string;
    provider: string;
    outcome: SampleOutcome;
    detail: string;
    compute_ms: number;
    challenge_id: string | null;
    at: number;
  };
  type RawChallenge = {
    challenge_id: string;
    kind: ChallengeKind;
    receipt_hash: string;
    provider: string;
    opened_at: number;
    step: number | null;
    batch: string | null;
    settled: number;
  };
  type RawDuty = {
    challenge_id: string;
    guilty: number | null;
    salt: string | null;
    detail: string | null;
    compute_ms: number;
    committed: number;
    revealed: number;
    settled: number;
  };

  const toSample = (r: RawSample): Sample => ({
    receiptHash: r.receipt_hash as Hex,
    batchId: BigInt(r.batch_id),
    provider: r.provider as Address,
    outcome: r.outcome,
    detail: r.detail,
    computeMs: r.compute_ms,
    challengeId: r.challenge_id === null ? undefined : BigInt(r.challenge_id),
    at: r.at,
  });
  const toChallenge = (r: RawChallenge): OpenedChallenge => ({
    challengeId: BigInt(r.challenge_id),
    kind: r.kind,
    receiptHash: r.receipt_hash as Hex,
    provider: r.provider as Address,
    openedAt: r.opened_at,
    step: r.step ?? undefined,
    ...(r.batch === null ? {} : { batch: batchFromJson(r.batch) }),
    settled: r.settled === 1,
  });
  const toDecision = (r: RawDuty): Decision | undefined => {
    if (r.guilty === null) return undefined;
    if (r.guilty === -1) return { kind: 'abstain', detail: r.detail ?? '' };
    return { kind: 'vote', guilty: r.guilty === 1, salt: r.salt as Hex, detail: r.detail ?? '' };
  };
  const toDuty = (r: RawDuty): Duty => ({
    challengeId: BigInt(r.challenge_id),
    decision: toDecision(r),
    computeMs: r.compute_ms,
    committed: r.committed === 1,
    revealed: r.revealed === 1,
    settled: r.settled === 1,
  });

  const q = {
    getCursor: db.prepare<[string], { block: string }>('SELECT block FROM cursors WHERE name = ?'),
    setCursor: db.prepare(
      'INSERT INTO cursors (name, block) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET block = excluded.block',
    ),
    addBatch: db.prepare(
      'INSERT OR IGNORE INTO batches (batch_id, provider, root, count, block, seen_at) VALUES (?, ?, ?, ?, ?, ?)',
    ),
    pendingBatches: db.prepare<[], RawBatch>(
      'SELECT * FROM batches WHERE done = 0 ORDER BY CAST(batch_id AS INTEGER)',
    ),
    finishBatch: db.prepare('UPDATE batches SET done = 1 WHERE batch_id = ?'),
    countBatches: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM batches'),
    putSample: db.prepare(
      `INSERT INTO samples (receipt_hash, batch_id, provider, outcome, detail, compute_ms, challenge_id, at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(receipt_hash) DO UPDATE SET outcome = excluded.outcome,
       detail = excluded.detail, compute_ms = excluded.compute_ms, challenge_id = excluded.challenge_id, at = excluded.at`,
    ),
    getSample: db.prepare<[string], RawSample>('SELECT * FROM samples WHERE receipt_hash = ?'),
    samples: db.prepare<[], RawSample>('SELECT * FROM samples ORDER BY at'),
    putEvidence: db.prepare(
      'INSERT OR REPLACE INTO evidence (receipt_hash, receipt, inputs, outputs) VALUES (?, ?, ?, ?)',
    ),
    getEvidence: db.prepare<[string], { receipt: string; inputs: Buffer; outputs: Buffer | null }>(
      'SELECT receipt, inputs, outputs FROM evidence WHERE receipt_hash = ?',
    ),
    addChallenge: db.prepare(
      'INSERT OR IGNORE INTO challenges (challenge_id, kind, receipt_hash, provider, opened_at, step, batch) VALUES (?, ?, ?, ?, ?, ?, ?)',
    ),
    challenges: db.prepare<[], RawChallenge>(
      'SELECT * FROM challenges ORDER BY CAST(challenge_id AS INTEGER)',
    ),
    settleChallenge: db.prepare('UPDATE challenges SET settled = 1 WHERE challenge_id = ?'),
    addDuty: db.prepare('INSERT OR IGNORE INTO duties (challenge_id) VALUES (?)'),
    decide: db.prepare(
      'UPDATE duties SET guilty = ?, salt = ?, detail = ?, compute_ms = ? WHERE challenge_id = ?',
    ),
    markDuty: db.prepare(
      'UPDATE duties SET committed = max(committed, ?), revealed = max(revealed, ?), settled = max(settled, ?) WHERE challenge_id = ?',
    ),
    duties: db.prepare<[], RawDuty>('SELECT * FROM duties ORDER BY CAST(challenge_id AS INTEGER)'),
    addDraw: db.prepare('INSERT OR IGNORE INTO draws (challenge_id) VALUES (?)'),
    draws: db.prepare<[], { challenge_id: string }>(
      'SELECT challenge_id FROM draws ORDER BY CAST(challenge_id AS INTEGER)',
    ),
    finishDraw: db.prepare('DELETE FROM draws WHERE challenge_id = ?'),
  };
  const blob = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

  return {
    /** The event reader's cursors (src/chain/event-reader.ts): the next block each stream reads. */
    cursor: (name: string): bigint | undefined => {
      const row = q.getCursor.get(name);
      return row && BigInt(row.block);
    },
    setCursor: (name: string, block: bigint) => void q.setCursor.run(name, block.toString()),
    addBatch: (b: Omit<PendingBatch, 'seenAt'>, seenAt: number) =>
      void q.addBatch.run(b.batchId.toString(), b.provider, b.root, b.count, b.block.toString(), seenAt),
    pendingBatches: (): PendingBatch[] =>
      q.pendingBatches.all().map((r) => ({
        batchId: BigInt(r.batch_id),
        provider: r.provider as Address,
        root: r.root as Hex,
        count: r.count,
        block: BigInt(r.block),
        seenAt: r.seen_at,
      })),
    finishBatch: (batchId: bigint) => void q.finishBatch.run(batchId.toString()),
    batchCount: () => q.countBatches.get()!.n,
    putSample: (s: Sample) =>
      void q.putSample.run(
        s.receiptHash,
        s.batchId.toString(),
        s.provider,
        s.outcome,
        s.detail,
        s.computeMs,
        s.challengeId?.toString() ?? null,
        s.at,
      ),
    getSample: (receiptHash: Hex): Sample | undefined => {
      const r = q.getSample.get(receiptHash);
      return r && toSample(r);
    },
    samples: (): Sample[] => q.samples.all().map(toSample),
    putEvidence: (receiptHash: Hex, e: Evidence) =>
      void q.putEvidence.run(
        receiptHash.toLowerCase(),
        JSON.stringify(e.receipt ?? null),
        blob(e.inputs),
        e.outputs ? blob(e.outputs) : null,
      ),
    getEvidence: (receiptHash: string): Evidence | undefined => {
      const r = q.getEvidence.get(receiptHash.toLowerCase());
      return (
        r && {
          receipt: (JSON.parse(r.receipt) as SignedReceiptJson | null) ?? undefined,
          inputs: new Uint8Array(r.inputs),
          outputs: r.outputs ? new Uint8Array(r.outputs) : undefined,
        }
      );
    },
    addChallenge: (c: Omit<OpenedChallenge, 'settled'>) =>
      void q.addChallenge.run(
        c.challengeId.toString(),
        c.kind,
        c.receiptHash,
        c.provider,
        c.openedAt,
        c.step ?? null,
        c.batch ? JSON.stringify({ id: c.batch.id.toString(), proof: c.batch.proof }) : null,
      ),
    challenges: (): OpenedChallenge[] => q.challenges.all().map(toChallenge),
    settleChallenge: (id: bigint) => void q.settleChallenge.run(id.toString()),
    addDuty: (id: bigint) => void q.addDuty.run(id.toString()),
    /** Records the decision before a vote is committed: the salt must survive a crash. */
    decide: (id: bigint, d: Decision, computeMs: number) =>
      void q.decide.run(
        d.kind === 'abstain' ? -1 : d.guilty ? 1 : 0,
        d.kind === 'vote' ? d.salt : null,
        d.detail,
        computeMs,
        id.toString(),
      ),
    markDuty: (id: bigint, done: { committed?: boolean; revealed?: boolean; settled?: boolean }) =>
      void q.markDuty.run(done.committed ? 1 : 0, done.revealed ? 1 : 0, done.settled ? 1 : 0, id.toString()),
    duties: (): Duty[] => q.duties.all().map(toDuty),
    /** A challenge against this provider whose committee it has to draw (once it is drawable). */
    addDraw: (id: bigint) => void q.addDraw.run(id.toString()),
    draws: (): bigint[] => q.draws.all().map((r) => BigInt(r.challenge_id)),
    finishDraw: (id: bigint) => void q.finishDraw.run(id.toString()),
    close: () => void db.close(),
  };
}
