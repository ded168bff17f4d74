import { z } from 'zod';

/**
 * A whole number in a query string (`?limit=10`), between `min` and `max`, `fallback` when absent;
 * parsed with `parseWire(schema, request.query, 'query')`, so a bad one is 400 naming `query.<name>`.
 */
export function queryInteger(bounds: { min: number; max: number; fallback: number }) {
  return z.coerce
    .number({ error: 'is not a whole number' })
    .int('is not a whole number')
    .min(bounds.min, `must be at least ${bounds.min}`)
    .max(bounds.max, `must be at most ${bounds.max}`)
    .default(bounds.fallback);
}
