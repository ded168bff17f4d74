import { stat } from 'node:fs/promises';
import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import type { ChatMessage } from '../../runtime/engine.js';
import { chat, closeClient, settle, type Client, type GenerationResult } from '../../sdk/index.js';
import { parsePositiveInt } from '../args.js';
import {
  connectionOptions,
  openClient,
  readDevnetProfile,
  resolveConnection,
  type ConnectionFlags,
} from '../connection.js';
import {
  enginesFor,
  generateLocally,
  printGeneration,
  samplingFields,
  samplingOptions,
  type RuntimeFlags,
  type SamplingFlags,
} from '../llm.js';
import { openStore, resolvePackage } from '../models.js';
import {
  hedgeOf,
  networkChatOptions,
  networkMode,
  parsePriceCap,
  printNetworkGeneration,
  type NetworkChatFlags,
} from '../network-chat.js';
import { commonOptions, globals, runtimeOptions } from '../options.js';
import type { Context } from '../program.js';

type ChatFlags = SamplingFlags &
  RuntimeFlags &
  ConnectionFlags &
  NetworkChatFlags & { prompt?: string; local?: boolean };

/** One turn: the answer to the history so far, its text written as it comes. */
type Turn = (history: readonly ChatMessage[], write: (text: string) => void) => Promise<string>;

/**
 * `glassbox chat <model>`: a conversation with an LLM, the model's own chat template applied to
 * the whole history each turn. Over the network (the SDK's `chat`: routed, failed over, every
 * receipt verified) when a chain is configured (--rpc-url, $GLASSBOX_RPC_URL or a running
 * `glassbox devnet`); on this machine with --local, with a model folder, or with no chain. With
 * --prompt, one turn and exit (scripts, tests); otherwise one turn per line of standard input until
 * it ends (Ctrl-D) or the line `/exit`.
 */
export function registerChatCommand(program: Command, ctx: Context): void {
  networkChatOptions(
    connectionOptions(runtimeOptions(samplingOptions(commonOptions(program.command('chat'))))),
  )
    .description(
      'chat with an LLM: over the network when a chain is configured (prints the receipts and their checks), else locally (prints the receipt hashes)',
    )
    .argument(
      '<model>',
      'a model id or name (network or store), or a model folder (Hugging Face ONNX layout)',
    )
    .option('--prompt <text>', 'one user message: answer it and exit')
    .option('--local', 'run the model on this machine even when a chain is configured')
    .action(async (ref: string, flags: ChatFlags, command: Command) => {
      const { json, store } = globals(command);
      const network = !flags.local && !(await isPath(ref)) && (await chainConfigured(flags));
      const session = network
        ? await networkSession(ctx, ref, flags, json, store)
        : await localSession(ctx, ref, flags, json, store);
      try {
        await converse(ctx, flags, json, session.turn);
      } finally {
        await session.close();
      }
    });
}

async function isPath(ref: string): Promise<boolean> {
  return stat(ref).then(
    () => true,
    () => false,
  );
}

/** A chain named by a flag, the environment, or a running devnet's profile. */
async function chainConfigured(flags: ConnectionFlags): Promise<boolean> {
  return Boolean(flags.rpcUrl ?? process.env.GLASSBOX_RPC_URL ?? (await readDevnetProfile()).rpcUrl);
}

/** The turns, from --prompt or standard input. */
async function converse(ctx: Context, flags: ChatFlags, json: boolean, turn: Turn): Promise<void> {
  const history: ChatMessage[] = flags.system ? [{ role: 'system', content: flags.system }] : [];
  const write = (text: string) => (json ? undefined : ctx.io.write?.(text));
  const once = async (content: string) => {
    history.push({ role: 'user', content });
    history.push({ role: 'assistant', content: await turn(history, write) });
  };
  if (flags.prompt !== undefined) return once(flags.prompt);
  const lines = createInterface({ input: process.stdin, terminal: false });
  if (!json) ctx.io.err('chatting; end with Ctrl-D or /exit');
  for await (const line of lines) {
    if (line.trim() === '/exit') break;
    if (line.trim() !== '') await once(line);
  }
  lines.close();
}

/** The text, then the hashes or the receipts: the text whole when it could not be streamed. */
function endTurn(ctx: Context, json: boolean, text: string): void {
  if (json) return;
  if (!ctx.io.write) ctx.io.out(text);
  else ctx.io.write('\n');
}

async function localSession(ctx: Context, ref: string, flags: ChatFlags, json: boolean, store: string) {
  const pkg = await resolvePackage(openStore(store), ref);
  const engines = enginesFor(flags);
  const engine = engines.tokens(pkg);
  const turn: Turn = async (history, write) => {
    const g = await generateLocally(engine, pkg, history, flags, write);
    endTurn(ctx, json, g.text);
    printGeneration(ctx.io, json, engine, g);
    return g.text;
  };
  return { turn, close: () => engines.close() };
}

async function networkSession(ctx: Context, ref: string, flags: ChatFlags, json: boolean, store: string) {
  const client = await openClient(await resolveConnection(flags), { store: openStore(store) });
  const mode = networkMode(flags);
  const call = {
    maxPrice: parsePriceCap(flags.maxPricePerMillion),
    mode,
    ...hedgeOf(flags),
    ...(flags.timeout === undefined ? {} : { timeoutMs: parsePositiveInt(flags.timeout, '--timeout') }),
  };
  const sampling = Object.fromEntries(
    Object.entries(samplingFields(flags)).filter(([, v]) => v !== undefined),
  );
  const turn: Turn = async (history, write) => {
    const params = { ...call, body: { model: ref, messages: [...history], ...sampling } };
    const g = await generate(client, params, typeof mode !== 'object', write);
    endTurn(ctx, json, g.text);
    printNetworkGeneration(ctx.io, json, g);
    return g.text;
  };
  // What the providers delivered is paid before the command exits.
  const close = async () => {
    try {
      await settle(client);
    } finally {
      await closeClient(client);
    }
  };
  return { turn, close };
}

/** Streams the generation when the mode can (a quorum compares whole answers). */
async function generate(
  client: Client,
  params: Parameters<typeof chat>[1],
  stream: boolean,
  write: (text: string) => void,
): Promise<GenerationResult> {
  if (!stream) {
    const g = await chat(client, { ...params, stream: false });
    write(g.text);
    return g;
  }
  const generation = chat(client, { ...params, stream: true });
  generation.result.catch(() => undefined); // read below, once the deltas ended
  for await (const delta of generation) write(delta.text);
  return generation.result;
}
