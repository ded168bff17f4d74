import Database from 'better-sqlite3';
import { closeSync, fdatasync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Address, Hex } from 'viem';
import type { ModelId } from '../protocol/manifest.js';
import type { SignedReceiptJson } from '../protocol/receipt.js';
import type { SignedVoucher } from '../protocol/voucher.js';

/*
 * The node's durable state, in one SQLite file (WAL, synchronous=FULL: a committed transaction
 * survives power loss). better-sqlite3 is synchronous, so each call here is atomic with respect to
 * the event loop.
 *
 * Answers are the exception to synchronous=FULL, for speed, not for less durability: an fsync
 * inside a commit stops the event loop for its whole length (0.3-2 ms on the bench machine, more on
 * a busy disk), during which no other request is parsed or run. `recordAnswer` writes a receipt,
 * its inputs and outputs, its client's account and the vouchers received with requests through a
 * second connection with synchronous=NORMAL, which SQLite does not sync at commit (it still syncs
 * the WAL before each checkpoint and the database after it); `syncAnswers` then makes them durable
 * with an fdatasync of the WAL on libuv's thread pool, which is what synchronous=FULL would have
 * done at the commit. src/node/group-commit.ts releases each answer only after a sync that began
 * after its commit (answers committed during one sync share the next), so no answer leaves before
 * its receipt is on disk.
 *
 * Amounts are stored as decimal TEXT (uint256 does not fit SQLite integers).
 */

const SCHEMA = `
CREATE TABLE IF NOT EXISTS receipts (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  request_id TEXT NOT NULL UNIQUE,
  client TEXT NOT NULL,
  model TEXT NOT NULL,
  input_hash TEXT NOT NULL,
  leaf TEXT NOT NULL,
  receipt TEXT NOT NULL,
  price TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  inputs BLOB,
  outputs BLOB,
  trace TEXT,
  batch_root TEXT,
  batch_index INTEGER,
  proof TEXT
);
CREATE INDEX IF NOT EXISTS receipts_open ON receipts(seq) WHERE batch_root IS NULL;
CREATE INDEX IF NOT EXISTS receipts_batch ON receipts(batch_root, batch_index);
CREATE INDEX IF NOT EXISTS receipts_created ON receipts(created_at);
CREATE INDEX IF NOT EXISTS receipts_leaf ON receipts(leaf);
CREATE TABLE IF NOT EXISTS batches (
  root TEXT PRIMARY KEY,
  count INTEGER NOT NULL,
  uri TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  batch_id TEXT,
  tx_hash TEXT,
  committed_at INTEGER
);
CREATE TABLE IF NOT EXISTS clients (
  client TEXT PRIMARY KEY,
  delivered TEXT NOT NULL DEFAULT '0',
  voucher_amount TEXT,
  voucher_signature TEXT,
  redeemed TEXT NOT NULL DEFAULT '0'
);
CREATE TABLE IF NOT EXISTS offers (
  model TEXT PRIMARY KEY,
  price TEXT NOT NULL,
  input_price TEXT NOT NULL DEFAULT '0',
  added_at INTEGER NOT NULL
);
`;

export type ReceiptRow = {
  readonly seq: number;
  readonly requestId: Hex;
  readonly client: Address;
  readonly model: string;
  readonly inputHash: Hex;
  readonly leaf: Hex;
  readonly receipt: SignedReceiptJson;
  readonly price: bigint;
  readonly createdAt: number;
  readonly inputs: Uint8Array | undefined;
  readonly outputs: Uint8Array | undefined;
  /** The hash of each traced step, for a traced run (bisection evidence). */
  readonly trace: readonly Hex[] | undefined;
  readonly batch: { readonly root: Hex; readonly index: number; readonly proof: Hex[] } | undefined;
};

export type BatchRow = {
  readonly root: Hex;
  readonly count: number;
  readonly uri: string;
  readonly createdAt: number;
  /** Set once the commit transaction is mined. */
  readonly batchId: bigint | undefined;
  readonly txHash: Hex | undefined;
  readonly committedAt: number | undefined;
};

export type ClientAccount = {
  readonly client: Address;
  /** The sum of the prices of every receipt this client was answered with. */
  readonly delivered: bigint;
  /** The best (highest) voucher it has sent. */
  readonly voucher: SignedVoucher | undefined;
  /** What has been redeemed of it on chain. */
  readonly redeemed: bigint;
};

export type NewAnswer = {
  readonly requestId: Hex;
  readonly client: Address;
  readonly model: string;
  readonly inputHash: Hex;
  readonly leaf: Hex;
  readonly receipt: SignedReceiptJson;
  readonly price: bigint;
  readonly createdAt: number;
  readonly inputs: Uint8Array;
  readonly outputs: Uint8Array;
  readonly trace?: readonly Hex[];
};

/** A model offer added through the admin API (src/node/offers.ts), served again after a restart. */
export type AddedOffer = {
  readonly model: ModelId;
  readonly price: bigint;
  /** Per input token (an LLM); 0 for a tensor model. */
  readonly inputPrice: bigint;
};

export type NodeDb = {
  /**
   * Persists an answer, charging its client, with `vouchers` (each kept if it is the best of its
   * client, as `offerVoucher`; written even when the answer is refused) in one transaction:
   * committed, and seen by every reader, but durable only once `syncAnswers` has resolved. Throws
   * SQLITE_CONSTRAINT_UNIQUE when the request id is already answered.
   */
  recordAnswer(answer: NewAnswer, vouchers?: readonly SignedVoucher[]): void;
  /** Resolves once every answer recorded before the call is on disk (fdatasync of the WAL). */
  syncAnswers(): Promise<void>;
  getReceipt(requestId: string): ReceiptRow | undefined;
  /** A receipt by its struct hash (its batch leaf content). */
  getReceiptByHash(receiptHash: string): ReceiptRow | undefined;
  /** The oldest receipts not yet in a batch. */
  openReceipts(limit: number): ReceiptRow[];
  countOpen(): number;
  oldestOpenAt(): number | undefined;
  /** Assigns receipts (in order) to a new, not yet committed batch. */
  createBatch(batch: {
    root: Hex;
    uri: string;
    createdAt: number;
    leaves: { seq: number; proof: Hex[] }[];
  }): void;
  markCommitted(root: Hex, commit: { batchId: bigint; txHash: Hex; committedAt: number }): void;
  getBatch(root: string): BatchRow | undefined;
  pendingBatches(): BatchRow[];
  /**
   * Up to `limit` receipts of a batch from position `offset`, in order, stopping before the one
   * that would take their inputs plus outputs past `maxDataBytes` (the first is always there).
   */
  batchPage(root: string, page: { offset: number; limit: number; maxDataBytes: number }): ReceiptRow[];
  /** A batch's leaves (receipt struct hashes) in order, without the receipts' data. */
  batchLeaves(root: string): Hex[];
  getAccount(client: Address): ClientAccount;
  /** Keeps `voucher` if it is higher than the one held; returns the account after. */
  offerVoucher(voucher: SignedVoucher): ClientAccount;
  /** Accounts whose best voucher is above what was redeemed. */
  unredeemed(): ClientAccount[];
  /** Accounts with something redeemed: their payments may be on hold in the escrow. */
  redeemedAccounts(): ClientAccount[];
  setRedeemed(client: Address, redeemed: bigint): void;
  /** Remembers (or reprices) an offer added at run time. */
  saveOffer(offer: AddedOffer): void;
  /** Forgets an offer added at run time; whether there was one. */
  deleteOffer(model: ModelId): boolean;
  /** The offers added at run time, oldest first. */
  addedOffers(): AddedOffer[];
  /** Deletes the receipts (and their data) of batches committed on chain before `before` (ms); returns how many. */
  prune(before: number): number;
  close(): void;
};

type RawReceipt = {
  seq: number;
  request_id: string;
  client: string;
  model: string;
  input_hash: string;
  leaf: string;
  receipt: string;
  price: string;
  created_at: number;
  inputs: Buffer | null;
  outputs: Buffer | null;
  trace: string | null;
  batch_root: string | null;
  batch_index: number | null;
  proof: string | null;
};

type RawBatch = {
  root: string;
  count: number;
  uri: string;
  created_at: number;
  batch_id: string | null;
  tx_hash: string | null;
  committed_at: number | null;
};

type RawClient = {
  client: string;
  delivered: string;
  voucher_amount: string | null;
  voucher_signature: string | null;
  redeemed: string;
};

function toReceipt(r: RawReceipt): ReceiptRow {
  return {
    seq: r.seq,
    requestId: r.request_id as Hex,
    client: r.client as Address,
    model: r.model,
    inputHash: r.input_hash as Hex,
    leaf: r.leaf as Hex,
    receipt: JSON.parse(r.receipt) as SignedReceiptJson,
    price: BigInt(r.price),
    createdAt: r.created_at,
    inputs: r.inputs === null ? undefined : new Uint8Array(r.inputs),
    outputs: r.outputs === null ? undefined : new Uint8Array(r.outputs),
    trace: r.trace === null ? undefined : (JSON.parse(r.trace) as Hex[]),
    batch:
      r.batch_root === null
        ? undefined
        : { root: r.batch_root as Hex, index: r.batch_index!, proof: JSON.parse(r.proof!) as Hex[] },
  };
}

function toBatch(b: RawBatch): BatchRow {
  return {
    root: b.root as Hex,
    count: b.count,
    uri: b.uri,
    createdAt: b.created_at,
    batchId: b.batch_id === null ? undefined : BigInt(b.batch_id),
    txHash: (b.tx_hash ?? undefined) as Hex | undefined,
    committedAt: b.committed_at ?? undefined,
  };
}

function toAccount(client: Address, c: RawClient | undefined): ClientAccount {
  if (!c) return { client, delivered: 0n, voucher: undefined, redeemed: 0n };
  return {
    client,
    delivered: BigInt(c.delivered),
    voucher:
      c.voucher_amount === null
        ? undefined
        : {
            voucher: { client, provider: '0x' as Address, amount: BigInt(c.voucher_amount) },
            signature: c.voucher_signature as Hex,
          },
    redeemed: BigInt(c.redeemed),
  };
}

/** What reads an account and keeps a better voucher, on either connection. */
function voucherStatements(conn: Database.Database) {
  return {
    getClient: conn.prepare<[string], RawClient>('SELECT * FROM clients WHERE client = ?'),
    upsertVoucher: conn.prepare(
      `INSERT INTO clients (client, voucher_amount, voucher_signature) VALUES (?, ?, ?)
       ON CONFLICT(client) DO UPDATE SET voucher_amount = excluded.voucher_amount,
         voucher_signature = excluded.voucher_signature`,
    ),
  };
}

type VoucherStatements = ReturnType<typeof voucherStatements>;

/** A client's account as `st`'s connection reads it, the voucher naming this provider. */
function accountOf(st: VoucherStatements, provider: Address, client: Address): ClientAccount {
  const a = toAccount(client, st.getClient.get(client));
  return a.voucher ? { ...a, voucher: { ...a.voucher, voucher: { ...a.voucher.voucher, provider } } } : a;
}

/** Keeps `signed` if it is higher than the client's voucher held; returns the account after. */
function keepBestVoucher(st: VoucherStatements, provider: Address, signed: SignedVoucher): ClientAccount {
  const client = signed.voucher.client;
  const current = accountOf(st, provider, client);
  if (current.voucher && current.voucher.voucher.amount >= signed.voucher.amount) return current;
  st.upsertVoucher.run(client, signed.voucher.amount.toString(), signed.signature);
  return accountOf(st, provider, client);
}

/** Opens (creating if needed) the node database at `path`. Clients are keyed by checksummed address. */
export function openNodeDb(path: string, provider: Address): NodeDb {
  mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  db.exec(SCHEMA);
  // Databases from before traces were kept: add the column (SQLite has no ADD COLUMN IF NOT EXISTS).
  const columns = db.prepare<[], { name: string }>('PRAGMA table_info(receipts)').all();
  if (!columns.some((c) => c.name === 'trace')) db.exec('ALTER TABLE receipts ADD COLUMN trace TEXT');
  // Databases from before per-token prices: their offers are all per inference (input price 0).
  const offerColumns = db.prepare<[], { name: string }>('PRAGMA table_info(offers)').all();
  if (!offerColumns.some((c) => c.name === 'input_price'))
    db.exec("ALTER TABLE offers ADD COLUMN input_price TEXT NOT NULL DEFAULT '0'");

  const s = {
    ...voucherStatements(db),
    setRedeemed: db.prepare('UPDATE clients SET redeemed = ? WHERE client = ?'),
    allClients: db.prepare<[], RawClient>('SELECT * FROM clients WHERE voucher_amount IS NOT NULL'),
    getReceipt: db.prepare<[string], RawReceipt>('SELECT * FROM receipts WHERE request_id = ?'),
    getReceiptByLeaf: db.prepare<[string], RawReceipt>('SELECT * FROM receipts WHERE leaf = ?'),
    openReceipts: db.prepare<[number], RawReceipt>(
      'SELECT * FROM receipts WHERE batch_root IS NULL ORDER BY seq LIMIT ?',
    ),
    countOpen: db.prepare<[], { n: number; oldest: number | null }>(
      'SELECT count(*) AS n, min(created_at) AS oldest FROM receipts WHERE batch_root IS NULL',
    ),
    assign: db.prepare(
      'UPDATE receipts SET batch_root = ?, batch_index = ?, proof = ? WHERE seq = ? AND batch_root IS NULL',
    ),
    insertBatch: db.prepare('INSERT INTO batches (root, count, uri, created_at) VALUES (?, ?, ?, ?)'),
    markCommitted: db.prepare(
      'UPDATE batches SET batch_id = ?, tx_hash = ?, committed_at = ? WHERE root = ?',
    ),
    getBatch: db.prepare<[string], RawBatch>('SELECT * FROM batches WHERE root = ?'),
    pendingBatches: db.prepare<[], RawBatch>(
      'SELECT * FROM batches WHERE batch_id IS NULL ORDER BY created_at',
    ),
    batchPage: db.prepare<[string, number, number], RawReceipt>(
      'SELECT * FROM receipts WHERE batch_root = ? ORDER BY batch_index LIMIT ? OFFSET ?',
    ),
    batchLeaves: db.prepare<[string], { leaf: string }>(
      'SELECT leaf FROM receipts WHERE batch_root = ? ORDER BY batch_index',
    ),
    // by the batch's commit time on chain: the challenge window runs from the commit block
    pruneReceipts: db.prepare(
      `DELETE FROM receipts WHERE batch_root IN
         (SELECT root FROM batches WHERE batch_id IS NOT NULL AND committed_at < ?)`,
    ),
    saveOffer: db.prepare(
      `INSERT INTO offers (model, price, input_price, added_at) VALUES (?, ?, ?, ?)
       ON CONFLICT(model) DO UPDATE SET price = excluded.price, input_price = excluded.input_price`,
    ),
    deleteOffer: db.prepare('DELETE FROM offers WHERE model = ?'),
    addedOffers: db.prepare<[], { model: string; price: string; input_price: string }>(
      'SELECT model, price, input_price FROM offers ORDER BY added_at, model',
    ),
    pruneBatches: db.prepare(
      `DELETE FROM batches WHERE batch_id IS NOT NULL AND committed_at < ?
         AND NOT EXISTS (SELECT 1 FROM receipts WHERE batch_root = batches.root)`,
    ),
  };

  const account = (client: Address): ClientAccount => accountOf(s, provider, client);

  // Answers' own connection (see the header). The WAL file exists once the schema is written and
  // stays while a connection is open; syncing any descriptor of it syncs the file.
  const answersDb = new Database(path);
  answersDb.pragma('synchronous = NORMAL');
  answersDb.pragma('foreign_keys = ON');
  const wal = openSync(`${path}-wal`, 'r');
  const w = {
    ...voucherStatements(answersDb),
    insertReceipt: answersDb.prepare(
      `INSERT INTO receipts (request_id, client, model, input_hash, leaf, receipt, price, created_at, inputs, outputs, trace)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    upsertDelivered: answersDb.prepare(
      `INSERT INTO clients (client, delivered) VALUES (?, ?)
       ON CONFLICT(client) DO UPDATE SET delivered = excluded.delivered`,
    ),
  };

  const insertAnswer = answersDb.transaction((a: NewAnswer) => {
    w.insertReceipt.run(
      a.requestId.toLowerCase(),
      a.client,
      a.model,
      a.inputHash,
      a.leaf,
      JSON.stringify(a.receipt),
      a.price.toString(),
      a.createdAt,
      Buffer.from(a.inputs.buffer, a.inputs.byteOffset, a.inputs.byteLength),
      Buffer.from(a.outputs.buffer, a.outputs.byteOffset, a.outputs.byteLength),
      a.trace ? JSON.stringify(a.trace) : null,
    );
    const delivered = accountOf(w, provider, a.client).delivered + a.price;
    w.upsertDelivered.run(a.client, delivered.toString());
  });

  // Nested in this transaction, insertAnswer is a savepoint: an answer refused leaves the vouchers in.
  const recordAnswer = answersDb.transaction((a: NewAnswer, vouchers: readonly SignedVoucher[]) => {
    for (const v of vouchers) keepBestVoucher(w, provider, v);
    try {
      insertAnswer(a);
      return undefined;
    } catch (error) {
      return error;
    }
  });

  const createBatch = db.transaction(
    (b: { root: Hex; uri: string; createdAt: number; leaves: { seq: number; proof: Hex[] }[] }) => {
      s.insertBatch.run(b.root, b.leaves.length, b.uri, b.createdAt);
      b.leaves.forEach((leaf, index) => {
        const changed = s.assign.run(b.root, index, JSON.stringify(leaf.proof), leaf.seq).changes;
        if (changed !== 1) throw new Error(`receipt ${leaf.seq} is already in a batch`);
      });
    },
  );

  const offerVoucher = db.transaction((signed: SignedVoucher) => keepBestVoucher(s, provider, signed));

  const prune = db.transaction((before: number): number => {
    const n = s.pruneReceipts.run(before).changes;
    s.pruneBatches.run(before);
    return n;
  });

  return {
    recordAnswer: (answer, vouchers = []) => {
      const refused = recordAnswer(answer, vouchers);
      if (refused) throw refused;
    },
    syncAnswers: () =>
      new Promise<void>((resolve, reject) => fdatasync(wal, (error) => (error ? reject(error) : resolve()))),
    getReceipt: (id) => {
      const r = s.getReceipt.get(id.toLowerCase());
      return r && toReceipt(r);
    },
    getReceiptByHash: (hash) => {
      const r = s.getReceiptByLeaf.get(hash.toLowerCase());
      return r && toReceipt(r);
    },
    openReceipts: (limit) => s.openReceipts.all(limit).map(toReceipt),
    countOpen: () => s.countOpen.get()!.n,
    oldestOpenAt: () => s.countOpen.get()!.oldest ?? undefined,
    createBatch: (b) => createBatch(b),
    markCommitted: (root, c) => {
      s.markCommitted.run(c.batchId.toString(), c.txHash, c.committedAt, root);
    },
    getBatch: (root) => {
      const b = s.getBatch.get(root.toLowerCase());
      return b && toBatch(b);
    },
    pendingBatches: () => s.pendingBatches.all().map(toBatch),
    batchPage: (root, page) => {
      const rows: ReceiptRow[] = [];
      let bytes = 0;
      // row by row: a page of large receipts is never read whole only to be cut
      for (const raw of s.batchPage.iterate(root.toLowerCase(), page.limit, page.offset)) {
        bytes += (raw.inputs?.length ?? 0) + (raw.outputs?.length ?? 0);
        if (rows.length > 0 && bytes > page.maxDataBytes) break;
        rows.push(toReceipt(raw));
      }
      return rows;
    },
    batchLeaves: (root) => s.batchLeaves.all(root.toLowerCase()).map((r) => r.leaf as Hex),
    getAccount: account,
    offerVoucher: (v) => offerVoucher(v),
    unredeemed: () =>
      s.allClients
        .all()
        .map((c) => account(c.client as Address))
        .filter((a) => a.voucher !== undefined && a.voucher.voucher.amount > a.redeemed),
    redeemedAccounts: () =>
      s.allClients
        .all()
        .map((c) => account(c.client as Address))
        .filter((a) => a.redeemed > 0n),
    setRedeemed: (client, redeemed) => {
      s.setRedeemed.run(redeemed.toString(), client);
    },
    saveOffer: (o) => {
      s.saveOffer.run(o.model, o.price.toString(), o.inputPrice.toString(), Date.now());
    },
    deleteOffer: (model) => s.deleteOffer.run(model).changes > 0,
    addedOffers: () =>
      s.addedOffers.all().map((o) => ({
        model: o.model as ModelId,
        price: BigInt(o.price),
        inputPrice: BigInt(o.input_price),
      })),
    prune: (before) => prune(before),
    close: () => {
      answersDb.close();
      closeSync(wal);
      db.close();
    },
  };
}
