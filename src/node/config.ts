import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { isHex } from 'viem';
import { z } from 'zod';
import { DEFAULT_MAX_BLOCK_RANGE } from '../chain/event-reader.js';
import { GlassboxError } from '../protocol/errors.js';
import { MAX_DATA_BYTES } from '../protocol/limits.js';
import { parseWith } from '../protocol/validate.js';

/*
 * The provider node's configuration: what `glassbox node start --config <file>` reads. Every field
 * is validated here, at the boundary; an error names the offending field (`models.0.price`).
 * Amounts are decimal strings of token base units (JSON has no bigints); times are ms.
 */

const privateKey = z
  .string()
  .refine((v) => isHex(v, { strict: true }) && v.length === 66, 'is not a 32-byte 0x-hex private key');
const amount = z
  .union([z.string().regex(/^\d{1,78}$/, 'is not a decimal amount of base units'), z.bigint()])
  .transform((v) => BigInt(v))
  .refine((v) => v >= 0n && v < 2n ** 256n, 'is outside the uint256 range');
const ms = z.number().int().nonnegative();

/** What a node does: serve inferences, sample and check others' batches, sit on committees. */
export const NODE_ROLES = ['provider', 'verifier', 'committee'] as const;
export type NodeRole = (typeof NODE_ROLES)[number];

export const nodeConfigSchema = z.strictObject({
  /**
   * `provider` registers, stakes, offers its models and answers; `verifier` samples committed
   * batches, re-executes and challenges mismatches (it posts bonds, no stake needed);
   * `committee` stakes, opts in to committee duty and votes on challenges. Any combination.
   */
  roles: z.array(z.enum(NODE_ROLES)).min(1).default(['provider']),
  chain: z
    .strictObject({
      rpcUrl: z.url(),
      chainId: z.number().int().positive(),
      /** Path of the deployment (addresses) file written by `glassbox chain deploy`. */
      deploymentFile: z.string().min(1).optional(),
      /** The deployment itself (a Deployment object or its JSON form), instead of a file. */
      deployment: z.unknown().optional(),
      /** viem's receipt polling interval; ~5 ms on anvil. */
      pollingIntervalMs: ms.optional(),
      /**
       * How deep a block must be before the roles act on its events (src/chain/event-reader.ts):
       * 0 on a devnet that makes blocks on demand; a few blocks where reorganisations happen.
       */
      confirmations: z.number().int().min(0).max(10_000).default(0),
      /** The most blocks one getLogs call covers (some RPC providers cap it). */
      maxLogBlockRange: z.number().int().min(1).max(1_000_000).default(Number(DEFAULT_MAX_BLOCK_RANGE)),
    })
    .refine((c) => (c.deploymentFile === undefined) !== (c.deployment === undefined), {
      message: 'needs exactly one of deploymentFile and deployment',
      path: ['deploymentFile'],
    }),
  keys: z.strictObject({
    /** The provider's staking account: registers, stakes, offers, commits batches, redeems. */
    stakingKey: privateKey,
    /** Signs receipts; may differ from the staking key (default: the staking key). */
    signingKey: privateKey.optional(),
  }),
  listen: z
    .strictObject({
      host: z.string().min(1).default('127.0.0.1'),
      /** 0 picks a free port. */
      port: z.number().int().min(0).max(65535).default(0),
      /** The URL registered on chain and used in batch URIs (default: http://host:port). */
      publicUrl: z.url().optional(),
    })
    .prefault({}),
  /** SQLite database, the admin token and (by default) the blob store live here. */
  dataDir: z.string().min(1),
  /**
   * The blob store (model packages), default `<dataDir>/store`. Content-addressed and re-hashed on
   * every read, so nodes and the CLI of one user may share one (the devnet's do).
   */
  store: z.string().min(1).optional(),
  /**
   * The bearer token of the admin API (/v1/admin: add and remove model offers at run time). Default:
   * $GLASSBOX_ADMIN_TOKEN, else a random one the node writes to `<dataDir>/admin-token` on first
   * start. At least 32 characters: it is the only thing between the network and the node's stake.
   */
  adminToken: z.string().min(32, 'is shorter than 32 characters').optional(),
  models: z
    .array(
      z.strictObject({
        /** A model id (CID) in the store or at a peer, or a model folder to pack. */
        model: z.string().min(1),
        /** The offered price in base units: per inference (tensor model), per output token (LLM). */
        price: amount,
        /** An LLM's price per input (prompt) token, in base units (default 0); 0 for a tensor model. */
        inputPrice: amount.optional(),
      }),
    )
    .min(1),
  /** The price of a model offered through the admin API when the request names none. */
  defaultPrice: amount.optional(),
  /**
   * The input (prompt) token price of an LLM offered through the admin API when the request names
   * none (default 0). Never applies to a tensor model: its input price is 0.
   */
  defaultInputPrice: amount.optional(),
  /** Stake to register with, or to top up to (providers and committee members). */
  stake: amount.default(0n),
  verifier: z
    .strictObject({
      /**
       * The probability of re-executing each committed receipt. Default: from the chain's
       * parameters (src/protocol/economics.ts, docs/economics.md).
       */
      sampleRate: z.number().min(0).max(1).optional(),
      /** How long a provider has to serve a sampled receipt's data before it is challenged. */
      dataDeadlineMs: ms.default(20_000),
      /** How often to look for new batches, challenges and deadlines. */
      pollIntervalMs: ms.min(10).default(1_000),
    })
    .prefault({}),
  batch: z
    .strictObject({
      maxReceipts: z.number().int().min(1).max(100_000).default(256),
      maxAgeMs: ms.min(10).default(10_000),
    })
    .prefault({}),
  /**
   * The most a client may owe (delivered minus paid) before it must send a voucher. Payment is
   * after delivery: a client has nothing to pay before its first answer, so with 0 no client would
   * ever be served. The default, 10^16 base units (0.01 of an 18-decimal token: ten answers at the
   * devnet's price of 10^15), is a few answers' worth; what is at risk is bounded by the client's
   * deposit anyway (src/node/payments.ts), so it only sets how often a client must pay.
   */
  creditLimit: amount.default(10n ** 16n),
  /**
   * How often to redeem vouchers on chain (0: only on stop). Must be below half the chain's
   * withdrawal delay, or a client could withdraw what was served before it is redeemed.
   */
  redeemIntervalMs: ms.default(60_000),
  rateLimit: z
    .strictObject({
      perMinute: z.number().int().min(1).default(6000),
    })
    .prefault({}),
  /**
   * The largest request body parsed: by default the most inputs any chain lets a receipt carry
   * (MAX_DATA_BYTES, 16 MiB) in the binary transport, whose body is their canonical encoding; a
   * million float32 values take 4 MiB. The same values as JSON take several times more: large
   * inputs travel binary.
   */
  bodyLimitBytes: z.number().int().min(1024).default(MAX_DATA_BYTES),
  /** How long committed receipts and their inputs are kept for verifiers, then pruned. */
  challengeWindowMs: ms.default(7 * 24 * 3_600_000),
  /** Other nodes' URLs to fetch model blobs from (GET /v1/blobs/:cid). */
  peers: z.array(z.url()).default([]),
  /** Time limit of one model run. */
  runTimeoutMs: z.number().int().min(1).default(30_000),
  /** How long a read of the on-chain price is reused. */
  priceCacheMs: ms.default(2_000),
  /**
   * How long a read of a client's escrow (deposit, pending withdrawal, redeemed) is reused for its
   * credit: a withdrawal request is noticed this much later at most (one that would refuse the
   * client is read again after 250 ms). 0 reads it for every request.
   */
  escrowCacheMs: ms.default(5_000),
  /**
   * How long stop() waits for requests in flight before it closes every connection (a client may
   * hold a connection open without sending a request).
   */
  shutdownGraceMs: ms.default(10_000),
  /** pino level; 'silent' for tests. */
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export type NodeConfigInput = z.input<typeof nodeConfigSchema>;
export type NodeConfig = z.output<typeof nodeConfigSchema>;

/** Validates a config; CONFIG_INVALID names the first offending field. */
export function parseNodeConfig(input: unknown): NodeConfig {
  return parseWith(nodeConfigSchema, input, { code: 'CONFIG_INVALID', label: 'config' });
}

/**
 * Reads a config file (JSON). Relative paths in it (dataDir, deploymentFile, model folders) are
 * resolved against the file's directory.
 */
export async function loadNodeConfig(path: string): Promise<NodeConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new GlassboxError('CONFIG_INVALID', `cannot read config file ${path}`, { field: 'path', cause });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new GlassboxError('CONFIG_INVALID', `config file ${path} is not JSON`, { field: 'path', cause });
  }
  const config = parseNodeConfig(json);
  const base = dirname(resolve(path));
  const at = (p: string) => resolve(base, p);
  return {
    ...config,
    dataDir: at(config.dataDir),
    ...(config.store === undefined ? {} : { store: at(config.store) }),
    chain: {
      ...config.chain,
      ...(config.chain.deploymentFile === undefined
        ? {}
        : { deploymentFile: at(config.chain.deploymentFile) }),
    },
    models: config.models.map((m) => (looksLikePath(m.model) ? { ...m, model: at(m.model) } : m)),
  };
}

/** A model reference that names a folder rather than an id. */
export function looksLikePath(model: string): boolean {
  return model.includes('/') || model.includes('\\') || model.startsWith('.');
}
