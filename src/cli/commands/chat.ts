import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import type { ChatMessage } from '../../runtime/engine.js';
import {
  enginesFor,
  generateLocally,
  printGeneration,
  samplingOptions,
  type RuntimeFlags,
  type SamplingFlags,
} from '../llm.js';
import { openStore, resolvePackage } from '../models.js';
import { commonOptions, globals, runtimeOptions } from '../options.js';
import type { Context } from '../program.js';

type ChatFlags = SamplingFlags & RuntimeFlags & { prompt?: string };

/**
 * `glassbox chat <model>`: a conversation with an LLM on this machine, the model's own chat template
 * applied to the whole history each turn. With --prompt, one turn and exit (scripts, tests);
 * otherwise one turn per line of standard input until it ends (Ctrl-D) or the line `/exit`.
 */
export function registerChatCommand(program: Command, ctx: Context): void {
  runtimeOptions(samplingOptions(commonOptions(program.command('chat'))))
    .description('chat with an LLM locally: streams the answer, then prints its receipt hashes')
    .argument('<model>', 'a model id in the store, or a model folder (Hugging Face ONNX layout)')
    .option('--prompt <text>', 'one user message: answer it and exit')
    .action(async (ref: string, flags: ChatFlags, command: Command) => {
      const { json, store } = globals(command);
      const pkg = await resolvePackage(openStore(store), ref);
      const engines = enginesFor(flags);
      const engine = engines.tokens(pkg);
      const history: ChatMessage[] = flags.system ? [{ role: 'system', content: flags.system }] : [];
      const write = (text: string) => (ctx.io.write ? ctx.io.write(text) : undefined);
      const turn = async (content: string) => {
        history.push({ role: 'user', content });
        const g = await generateLocally(engine, pkg, history, flags, json ? () => undefined : write);
        history.push({ role: 'assistant', content: g.text });
        if (!json) {
          if (!ctx.io.write) ctx.io.out(g.text);
          else write('\n');
        }
        printGeneration(ctx.io, json, engine, g);
      };
      try {
        if (flags.prompt !== undefined) return await turn(flags.prompt);
        const lines = createInterface({ input: process.stdin, terminal: false });
        if (!json) ctx.io.err(`chatting with ${pkg.manifest.name} (${pkg.id}); end with Ctrl-D or /exit`);
        for await (const line of lines) {
          if (line.trim() === '/exit') break;
          if (line.trim() !== '') await turn(line);
        }
        lines.close();
      } finally {
        await engines.close();
      }
    });
}
