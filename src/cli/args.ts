import { readFile } from 'node:fs/promises';
import { DEFAULT_TOLERANCE, type ComparisonPolicy } from '../protocol/policy.js';
import { usageError } from './io.js';

/** `exact` | `tolerance[:ABS[:REL]]` | `argmax:OUTPUT`, the one spelling of a policy on the command line. */
export function parsePolicy(value: string): ComparisonPolicy {
  const [kind, ...rest] = value.split(':');
  if (kind === 'exact' && rest.length === 0) return { kind: 'exact' };
  if (kind === 'argmax' && rest.length === 1 && rest[0]) return { kind: 'argmax', output: rest[0] };
  if (kind === 'tolerance' && rest.length <= 2) {
    const [abs = DEFAULT_TOLERANCE.abs, rel = DEFAULT_TOLERANCE.rel] = rest.map(Number);
    if (Number.isFinite(abs) && Number.isFinite(rel) && abs >= 0 && rel >= 0)
      return { kind: 'tolerance', abs, rel };
  }
  throw usageError(`--policy ${value} is not exact, tolerance[:ABS[:REL]] or argmax:OUTPUT`);
}

export function parsePositiveInt(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw usageError(`${flag} ${value} is not a positive integer`);
  return n;
}

/** A decimal amount of token base units (`--price 1000000000000000`). */
export function parseAmount(value: string, flag: string): bigint {
  if (!/^\d{1,78}$/.test(value)) throw usageError(`${flag} ${value} is not a decimal amount of base units`);
  return BigInt(value);
}

export function parseCount(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw usageError(`${flag} ${value} is not a whole number`);
  return n;
}

/** Inline JSON when the value looks like JSON, else the path of a JSON file. */
export async function readJsonArgument(value: string, flag: string): Promise<unknown> {
  const inline = /^\s*[[{]/.test(value);
  let text: string;
  try {
    text = inline ? value : await readFile(value, 'utf8');
  } catch (cause) {
    throw usageError(`${flag} ${value} is neither inline JSON nor a readable file`, cause);
  }
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw usageError(
      `${flag} ${inline ? 'value' : value} is not valid JSON: ${(cause as Error).message}`,
      cause,
    );
  }
}
