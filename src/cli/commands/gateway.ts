import { Option, type Command } from 'commander';
import pino from 'pino';
import { createGateway } from '../../gateway/index.js';
import { closeClient, settle, type LlmMode, type TokenPriceCap } from '../../sdk/index.js';
import { openStore } from '../models.js';
import { parseAmount, parsePositiveInt } from '../args.js';
import { connectionOptions, openClient, resolveConnection, type ConnectionFlags } from '../connection.js';
import { formatAmount, toJson, usageError } from '../io.js';
import { commonOptions, globals } from '../options.js';
import type { Context } from '../program.js';

type GatewayFlags = ConnectionFlags & {
  port: string;
  host: string;
  quorum?: string;
  recheck?: 'local';
  maxPricePerMillion?: string;
  apiKey?: string;
  hedgeAfter?: string;
  timeout?: string;
  logLevel: string;
};

/** No cap: the largest uint256, so every offer is under it. */
const NO_CAP = 2n ** 256n - 1n;

/** `<input>,<output>`: base units per million tokens, prompt and generated. */
export function parsePriceCap(value: string | undefined): TokenPriceCap {
  if (value === undefined) return { input: NO_CAP, output: NO_CAP };
  const parts = value.split(',');
  if (parts.length !== 2)
    throw usageError(
      `--max-price-per-million ${value} is not <input>,<output> (base units per million tokens)`,
    );
  return {
    input: parseAmount(parts[0]!.trim(), '--max-price-per-million (input)'),
    output: parseAmount(parts[1]!.trim(), '--max-price-per-million (output)'),
  };
}

/** The SDK mode of the flags: a quorum, a local re-check, or verified receipts. */
export function gatewayMode(flags: { quorum?: string; recheck?: string }): LlmMode {
  if (flags.quorum !== undefined && flags.recheck !== undefined)
    throw usageError('--quorum and --recheck local are two modes: pick one');
  if (flags.quorum !== undefined) {
    const k = parsePositiveInt(flags.quorum, '--quorum');
    if (k < 2) throw usageError(`--quorum ${flags.quorum}: a quorum needs at least 2 providers`);
    return { quorum: k };
  }
  return flags.recheck === 'local' ? 'local' : 'receipt';
}

/**
 * `glassbox gateway`: a local OpenAI-compatible endpoint to the network (src/gateway). Runs until
 * SIGINT or SIGTERM, then sends each provider the voucher for what it delivered, so that nothing
 * this gateway received is left unpaid.
 */
export function registerGatewayCommand(program: Command, ctx: Context): void {
  connectionOptions(commonOptions(program.command('gateway')))
    .description(
      'serve an OpenAI-compatible endpoint (/v1/chat/completions, /v1/completions, /v1/models) answered by the network, every receipt verified',
    )
    .option('--port <port>', 'the port to listen on (0: any free port)', '8787')
    .option('--host <host>', 'the address to listen on', '127.0.0.1')
    .option('--quorum <k>', 'ask k providers per (non-stream) request and answer the majority')
    .addOption(
      new Option('--recheck <where>', 're-check every generation by teacher forcing here').choices(['local']),
    )
    .option(
      '--max-price-per-million <input,output>',
      'route around providers priced above this (base units per million tokens)',
    )
    .option('--api-key <key>', 'require Authorization: Bearer <key> (default: none, for loopback)')
    .option('--hedge-after <ms>', 'no first token by then: a second provider races (default: from health)')
    .option('--timeout <ms>', 'the time limit of one request, in ms')
    .addOption(
      new Option('--log-level <level>', 'log level')
        .choices(['silent', 'error', 'warn', 'info', 'debug'])
        .default('warn'),
    )
    .action(async (flags: GatewayFlags, command: Command) => {
      const { json, store } = globals(command);
      const mode = gatewayMode(flags);
      const maxPrice = parsePriceCap(flags.maxPricePerMillion);
      const port = Number(flags.port);
      if (!Number.isInteger(port) || port < 0 || port > 65_535)
        throw usageError(`--port ${flags.port} is not a port`);
      const client = await openClient(await resolveConnection(flags), { store: openStore(store) });
      const gateway = await createGateway({
        client,
        mode,
        maxPrice,
        port,
        host: flags.host,
        logger: pino({ level: flags.logLevel }, pino.destination(2)),
        ...(flags.apiKey === undefined ? {} : { apiKey: flags.apiKey }),
        ...(flags.hedgeAfter === undefined
          ? {}
          : { hedgeAfterMs: parsePositiveInt(flags.hedgeAfter, '--hedge-after') }),
        ...(flags.timeout === undefined ? {} : { timeoutMs: parsePositiveInt(flags.timeout, '--timeout') }),
      }).catch(async (error: unknown) => {
        await closeClient(client);
        throw error;
      });
      const base = `${gateway.url}/v1`;
      if (json) ctx.io.out(toJson({ url: base, client: client.address, mode, maxPrice }));
      else {
        ctx.io.out(`gateway on ${base} as client ${client.address}`);
        ctx.io.err(
          `  mode ${typeof mode === 'object' ? `quorum of ${mode.quorum}` : mode}; price cap ${capText(maxPrice)}`,
        );
        ctx.io.out(`export OPENAI_BASE_URL=${base} OPENAI_API_KEY=${flags.apiKey ?? 'unused'}`);
      }
      await ctx.untilStopped;
      await gateway.close();
      try {
        const paid = await settle(client);
        for (const p of paid)
          ctx.io.err(
            `voucher ${formatAmount(p.amount)} to ${p.provider}: ${p.delivered ? 'delivered' : `not delivered (${p.error ?? 'unreachable'})`}`,
          );
        ctx.io.err(`stopped; ${paid.length} provider(s) settled`);
      } finally {
        await closeClient(client);
      }
    });
}

const capText = (cap: TokenPriceCap): string =>
  cap.input === NO_CAP && cap.output === NO_CAP
    ? 'none'
    : `${formatAmount(cap.input)} input, ${formatAmount(cap.output)} output per million tokens`;
