import type { Command } from 'commander';
import { isAddress, type Address } from 'viem';
import { closeClient, createSessionKey } from '../../sdk/index.js';
import { connectionOptions, openClient, resolveConnection, type ConnectionFlags } from '../connection.js';
import { toJson, usageError } from '../io.js';
import { jsonOption } from '../options.js';
import type { Context } from '../program.js';

type KeyFlags = ConnectionFlags & { provider: string; ttl: string; json: boolean };

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `24h`, `30m`, `7d`, `90s`, `500ms` (a bare number is ms). */
export function parseTtl(value: string): number {
  const match = /^(\d+)(ms|s|m|h|d)?$/.exec(value.trim());
  const ms = match ? Number(match[1]) * UNITS[match[2] ?? 'ms']! : NaN;
  if (!Number.isSafeInteger(ms) || ms <= 0)
    throw usageError(`--ttl ${value} is not a duration (e.g. 24h, 30m, 7d, 90s)`);
  return ms;
}

/**
 * `glassbox key --provider <addr> [--ttl 24h]`: an API key for a provider's OpenAI-compatible
 * routes, signed by the connection's account (src/sdk/session.ts). The key is printed alone (with
 * --json: the key, client, provider and expiry) so that `OPENAI_API_KEY=$(glassbox key …)` works.
 */
export function registerKeyCommand(program: Command, ctx: Context): void {
  connectionOptions(jsonOption(program.command('key')))
    .description("make an API key for a provider's OpenAI-compatible routes (Authorization: Bearer <key>)")
    .requiredOption('--provider <address>', "the provider's address (GET /v1/models names it)")
    .option('--ttl <duration>', 'how long the key is valid (e.g. 24h, 30m, 7d)', '24h')
    .action(async (flags: KeyFlags) => {
      if (!isAddress(flags.provider, { strict: false }))
        throw usageError(`--provider ${flags.provider} is not an address`);
      const ttlMs = parseTtl(flags.ttl);
      const client = await openClient(await resolveConnection(flags));
      try {
        const key = await createSessionKey(client, { provider: flags.provider as Address, ttlMs });
        if (flags.json) ctx.io.out(toJson(key));
        else ctx.io.out(key.key);
      } finally {
        await closeClient(client);
      }
    });
}
