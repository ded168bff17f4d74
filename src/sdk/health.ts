import type { Address } from 'viem';
import type { Client } from './client.js';

/**
 * Per-provider health as this client measured it: an EWMA of latency and of its deviation (the
 * way TCP estimates round trips), success and failure counts, and a cool-down after failures
 * during which the provider is tried only after every healthy one.
 */
export type ProviderHealth = {
  /** EWMA of successful request latency, ms (undefined until one succeeded). */
  latencyMs: number | undefined;
  /** EWMA of |sample - latencyMs|, ms. */
  deviationMs: number;
  successes: number;
  failures: number;
  /** Failures since the last success. */
  failuresInRow: number;
  /** Tried last until this time (ms since the epoch). */
  coolUntil: number;
  lastError: string | undefined;
};

/** Weight of a new latency sample in the EWMA. */
export const EWMA_ALPHA = 0.25;

function entry(client: Client, provider: Address): ProviderHealth {
  let h = client.state.health.get(provider);
  if (!h) {
    h = {
      latencyMs: undefined,
      deviationMs: 0,
      successes: 0,
      failures: 0,
      failuresInRow: 0,
      coolUntil: 0,
      lastError: undefined,
    };
    client.state.health.set(provider, h);
  }
  return h;
}

export function recordSuccess(client: Client, provider: Address, latencyMs: number): void {
  const h = entry(client, provider);
  if (h.latencyMs === undefined) {
    h.latencyMs = latencyMs;
    h.deviationMs = latencyMs / 2;
  } else {
    h.deviationMs = (1 - EWMA_ALPHA) * h.deviationMs + EWMA_ALPHA * Math.abs(latencyMs - h.latencyMs);
    h.latencyMs = (1 - EWMA_ALPHA) * h.latencyMs + EWMA_ALPHA * latencyMs;
  }
  h.successes++;
  h.failuresInRow = 0;
  h.coolUntil = 0;
}

export function recordFailure(client: Client, provider: Address, reason: string, now = Date.now()): void {
  const h = entry(client, provider);
  h.failures++;
  h.failuresInRow++;
  h.lastError = reason;
  h.coolUntil = now + client.options.cooldownMs * 2 ** Math.min(h.failuresInRow - 1, 4);
}

/** A latency that a provider exceeds about 5% of the time (EWMA + 2 deviations), if measured. */
export function latencyP95(h: ProviderHealth | undefined): number | undefined {
  return h?.latencyMs === undefined ? undefined : h.latencyMs + 2 * h.deviationMs;
}

/** How long to wait for `provider` before hedging to the next one. */
export function hedgeBudgetMs(client: Client, provider: Address): number | undefined {
  const fixed = client.options.hedgeAfterMs;
  if (fixed === false) return undefined;
  if (fixed !== undefined) return fixed;
  const p95 = latencyP95(client.state.health.get(provider));
  return Math.max(client.options.minHedgeAfterMs, p95 ?? client.options.defaultHedgeAfterMs);
}

export type ProviderHealthReport = ProviderHealth & { readonly provider: Address; readonly cooling: boolean };

/** A snapshot of what the client measured, per provider. */
export function providerHealth(client: Client, now = Date.now()): ProviderHealthReport[] {
  return [...client.state.health.entries()].map(([provider, h]) => ({
    ...h,
    provider,
    cooling: h.coolUntil > now,
  }));
}
