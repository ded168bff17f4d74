import { Command, CommanderError } from 'commander';
import { registerModelCommands } from './commands/model.js';
import { registerRunCommand } from './commands/run.js';
import { registerChatCommand } from './commands/chat.js';
import { registerChainCommands } from './commands/chain.js';
import { registerDemoCommand } from './commands/demo.js';
import { registerDevnetCommand } from './commands/devnet.js';
import { registerInferCommand } from './commands/infer.js';
import { registerKeyCommand } from './commands/key.js';
import { registerNetworkCommands } from './commands/network.js';
import { registerNodeCommands } from './commands/node.js';
import { registerDisputeCommands } from './commands/disputes.js';
import { registerGatewayCommand } from './commands/gateway.js';
import { reportError, type Io } from './io.js';

/** What each command receives: where to write, and (for long-running commands) when to stop. */
export type Context = { io: Io; untilStopped: Promise<void> };

/** Resolves on the first SIGINT or SIGTERM. */
function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}

export function createProgram(io: Io, untilStopped: () => Promise<void> = untilSignal): Command {
  const program = new Command('glassbox')
    .description('Verifiable AI inference: content-addressed models, pinned runtimes, signed receipts.')
    .version(process.env.npm_package_version ?? '0.1.0')
    // Program options only before a command, so that `model pack --version 2` is the model's version.
    .enablePositionalOptions()
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) })
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)');
  let stopped: Promise<void> | undefined;
  const ctx: Context = {
    io,
    // Listening for signals only once a long-running command asks, so that short ones exit as usual.
    get untilStopped() {
      return (stopped ??= untilStopped());
    },
  };
  const model = registerModelCommands(program, ctx);
  registerRunCommand(program, ctx);
  registerChatCommand(program, ctx);
  registerDemoCommand(program, ctx);
  registerChainCommands(program, ctx);
  const node = registerNodeCommands(program, ctx);
  registerDisputeCommands(program, node, ctx);
  registerDevnetCommand(program, ctx);
  registerInferCommand(program, ctx);
  registerKeyCommand(program, ctx);
  registerGatewayCommand(program, ctx);
  registerNetworkCommands(program, model, ctx);
  return program;
}

/** Runs the CLI on `argv` (without `node` and the script) and returns the exit code. */
export async function runCli(
  argv: readonly string[],
  io: Io,
  untilStopped?: () => Promise<void>,
): Promise<number> {
  const program = createProgram(io, untilStopped);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (error) {
    // Commander has already printed its own usage errors; help and --version exit 0.
    if (error instanceof CommanderError) return error.exitCode;
    return reportError(io, error);
  }
}
