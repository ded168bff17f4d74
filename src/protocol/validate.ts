import type { z } from 'zod';
import { GlassboxError, type ErrorCode } from './errors.js';

export type ParseOptions = {
  /** The error code a failure carries. */
  readonly code: ErrorCode;
  /** Prefixed to every field path (`manifest` gives `manifest.inputs.0.dtype`). */
  readonly root?: string;
  /** Prefixed to the message only (`config` gives `config models.0.price: …`). */
  readonly label?: string;
};

/**
 * Validates untrusted data against a schema at a boundary: the value, or a GlassboxError that names
 * the first offending field as a path (an unknown key names itself, not its parent) and lists a few
 * more problems as context.
 */
export function parseWith<S extends z.ZodType>(
  schema: S,
  value: unknown,
  options: ParseOptions,
): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const fieldOf = (issue: z.core.$ZodIssue): string => {
    const path = [...(options.root === undefined ? [] : [options.root]), ...issue.path.map(String)];
    if (issue.code === 'unrecognized_keys' && issue.keys[0] !== undefined) path.push(issue.keys[0]);
    return path.join('.') || (options.label ?? 'value');
  };
  const [first, ...rest] = result.error.issues;
  const field = fieldOf(first!);
  const label = options.label === undefined ? '' : `${options.label} `;
  throw new GlassboxError(options.code, `${label}${field}: ${first!.message}`, {
    field,
    metaMessages: rest.slice(0, 4).map((issue) => `also ${fieldOf(issue)}: ${issue.message}`),
  });
}
