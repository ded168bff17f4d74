import { Option, type Command } from 'commander';
import pino from 'pino';
import { createGateway } from '../../gateway/index.js';
import { closeClient, settle } from '../../sdk/index.js';
import { parsePositiveInt } from '../args.js';
import { connectionOptions, openClient, resolveConnection, type ConnectionFlags } from '../connection.js';
import { formatAmount, toJson, usageError } from '../io.js';
import { openStore } from '../models.js';
import {
  capText,
  hedgeOf,
  modeText,
  networkChatOptions,
  networkMode,
  parsePriceCap,
  type NetworkChatFlags,
} from '../network-chat.js';
import { commonOptions, globals } from '../options.js';
import type { Context } from '../program.js';

type GatewayFlags = ConnectionFlags &
  NetworkChatFlags & { port: string; host: string; apiKey?: string; timeout?: string; logLevel: string };

/**
 * `glassbox gateway`: a local OpenAI-compatible endpoint to the network (src/gateway). Runs until
 * SIGINT or SIGTERM, then sends each provider the voucher for what it delivered, so that nothing
 * this gateway received is left unpaid.
 */
export function registerGatewayCommand(program: Command, ctx: Context): void {
  networkChatOptions(connectionOptions(commonOptions(program.command('gateway'))))
    .description(
      'serve an OpenAI-compatible endpoint (/v1/chat/completions, /v1/completions, /v1/models) answered by the network, every receipt verified',
    )
    .option('--port <port>', 'the port to listen on (0: any free port)', '8787')
    .option('--host <host>', 'the address to listen on', '127.0.0.1')
    .option('--api-key <key>', 'require Authorization: Bearer <key> (default: none, for loopback)')
    .option('--timeout <ms>', 'the time limit of one request, in ms')
    .addOption(
      new Option('--log-level <level>', 'log level (to standard error)')
        .choices(['silent', 'error', 'warn', 'info', 'debug'])
        .default('warn'),
    )
    .action(async (flags: GatewayFlags, command: Command) => {
      const { json, store } = globals(command);
      const mode = networkMode(flags);
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
        ...hedgeOf(flags),
        ...(flags.apiKey === undefined ? {} : { apiKey: flags.apiKey }),
        ...(flags.timeout === undefined ? {} : { timeoutMs: parsePositiveInt(flags.timeout, '--timeout') }),
      }).catch(async (error: unknown) => {
        await closeClient(client);
        throw error;
      });
      const base = `${gateway.url}/v1`;
      if (json) ctx.io.out(toJson({ url: base, client: client.address, mode, maxPrice }));
      else {
        ctx.io.out(`gateway on ${base} as client ${client.address}`);
        ctx.io.out(`export OPENAI_BASE_URL=${base} OPENAI_API_KEY=${flags.apiKey ?? 'unused'}`);
        ctx.io.err(`mode ${modeText(mode)}; price cap ${capText(maxPrice)}; stop with Ctrl-C`);
      }
      await ctx.untilStopped;
      await gateway.close();
      try {
        const paid = await settle(client);
        for (const p of paid)
          ctx.io.err(
            `voucher for ${formatAmount(p.amount)} to ${p.provider}: ${p.delivered ? 'delivered' : `not delivered (${p.error ?? 'unreachable'})`}`,
          );
        ctx.io.err(`stopped; vouchers sent to ${paid.length} provider(s)`);
      } finally {
        await closeClient(client);
      }
    });
}
