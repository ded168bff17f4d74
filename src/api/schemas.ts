import { z } from 'zod';
import { address, bytes32 } from '../protocol/api.js';
import { ErrorCodes, type ErrorCode } from '../protocol/errors.js';

/*
 * The wire shapes of the node's own routes (health, status, errors) beside the provider protocol's
 * (src/protocol/api.ts, src/protocol/admin.ts). Like those, answers are z.object: a reader ignores
 * fields it does not know, so a node may add one without breaking older readers.
 */

export const PROBLEM_TYPE = 'application/problem+json';

const count = z.number().int().nonnegative();
const decimalId = z.string().regex(/^\d{1,78}$/, 'is not a decimal id');

/** A problem+json error answer (RFC 9457): `code` is the contract, `message` for people. */
export const problemSchema = z.object({
  code: z.enum(Object.keys(ErrorCodes) as [ErrorCode, ...ErrorCode[]]),
  message: z.string(),
  /** The offending field as a path (`inputs.features.shape[1]`), when the error is about one. */
  field: z.string().optional(),
  details: z.record(z.string(), z.unknown()).optional(),
});

/** GET /health: 200 while serving, 503 (the same body) while starting or stopping. */
export const healthSchema = z.object({
  ok: z.boolean(),
  state: z.enum(['starting', 'ready', 'stopping']),
  provider: address,
  /** How many models it loaded. */
  models: count,
  /** Receipts not yet committed in a batch. */
  openReceipts: count,
  uptimeMs: count,
});
export type Health = z.input<typeof healthSchema>;

const sampleOutcome = z.enum(['match', 'mismatch', 'unavailable', 'skipped']);

const sampleSchema = z.object({
  receiptHash: bytes32,
  batchId: decimalId,
  provider: address,
  outcome: sampleOutcome,
  detail: z.string(),
  computeMs: z.number().nonnegative(),
  challengeId: decimalId.optional(),
  at: count,
});

const challengeSchema = z.object({
  challengeId: decimalId,
  kind: z.string(),
  /** The receipt struct hash; for a batch availability challenge, the batch root. */
  receiptHash: bytes32,
  provider: address,
  openedAt: count,
  /** The first divergent trace step the challenge proved, if any. */
  step: count.optional(),
  batchId: decimalId.optional(),
  settled: z.boolean(),
});

const dutySchema = z.object({
  challengeId: decimalId,
  decision: z.enum(['vote', 'abstain']).optional(),
  guilty: z.boolean().optional(),
  detail: z.string().optional(),
  computeMs: z.number().nonnegative(),
  committed: z.boolean(),
  revealed: z.boolean(),
  settled: z.boolean(),
});

/**
 * GET /v1/status: the node's roles, counts of what its verifier and committee member did, and the
 * latest `limit` of its samples, challenges and duties (`glassbox node status`).
 */
export const nodeStatusSchema = z.object({
  state: z.enum(['starting', 'ready', 'stopping']),
  provider: address,
  /** The node's chain address (its verifier's and committee member's). */
  address,
  roles: z.array(z.string()).readonly(),
  uptimeMs: count,
  /** How many of each list are shown: the latest. */
  limit: count,
  verifier: z
    .object({
      sampleRate: z.number().min(0).max(1),
      batchesSeen: count,
      sampled: count,
      outcomes: z.record(sampleOutcome, count),
      /** Time spent re-executing, ms. */
      computeMs: z.number().nonnegative(),
      challengeCount: count,
      challenges: z.array(challengeSchema).readonly(),
      samples: z.array(sampleSchema).readonly(),
    })
    .optional(),
  committee: z.object({ dutyCount: count, duties: z.array(dutySchema).readonly() }).optional(),
});
export type NodeStatus = z.input<typeof nodeStatusSchema>;
