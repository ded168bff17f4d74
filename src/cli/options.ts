import { Option, type Command } from 'commander';
import { defaultStoreDir, type GlobalOptions } from './io.js';

/** `--json`, the same on every command that prints data (after the command name, Foundry-style). */
export function jsonOption(command: Command): Command {
  return command.option('--json', 'print one JSON document for machines', false);
}

/** `--json` and `--store`, for the commands that use models. */
export function commonOptions(command: Command): Command {
  return jsonOption(command).addOption(
    new Option('--store <dir>', 'the model store').default(
      defaultStoreDir(),
      '$GLASSBOX_STORE or ~/.glassbox/store',
    ),
  );
}

export function globals(command: Command): GlobalOptions {
  return command.opts<GlobalOptions>();
}

/** Intra-op threads, graph optimisation level and time limit: how `run` and `chat` run a model locally. */
export function runtimeOptions(command: Command): Command {
  return command
    .option('--threads <n>', 'intra-op threads (does not change the output bits)')
    .addOption(
      new Option(
        '--optimization <level>',
        'graph optimisation level (part of the runtime profile; default basic)',
      ).choices(['disabled', 'basic', 'extended', 'all']),
    )
    .option('--timeout <ms>', 'time limit of one run or generation, in ms');
}
