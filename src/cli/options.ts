import { Option, type Command } from 'commander';
import { defaultStoreDir, type GlobalOptions } from './io.js';

/** `--store` and `--json`, the same on every command (after the command name, Foundry-style). */
export function commonOptions(command: Command): Command {
  return command
    .addOption(
      new Option('--store <dir>', 'the model store').default(
        defaultStoreDir(),
        '$GLASSBOX_STORE or ~/.glassbox/store',
      ),
    )
    .option('--json', 'print one JSON document for machines', false);
}

export function globals(command: Command): GlobalOptions {
  return command.opts<GlobalOptions>();
}
