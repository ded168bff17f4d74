import type { Command } from 'commander';
import { loadNodeConfig, startNode } from '../../node/index.js';
import { printFields, toJson } from '../io.js';
import { jsonOption } from '../options.js';
import type { Context } from '../program.js';

export function registerNodeCommands(program: Command, ctx: Context): Command {
  const node = program
    .command('node')
    .description('run a node: provider, verifier and/or committee member (config `roles`)');

  jsonOption(node.command('start'))
    .description('start a provider node: register and stake where needed, serve the models, commit receipts')
    .requiredOption('--config <file>', 'the node config (JSON; see docs/node.md)')
    .action(async (flags: { config: string; json: boolean }) => {
      const started = await startNode(await loadNodeConfig(flags.config));
      try {
        const models = [...started.models.keys()];
        // One line a supervisor (glassbox devnet) waits for before it sends traffic.
        if (flags.json)
          ctx.io.out(
            toJson({
              ready: true,
              url: started.url,
              address: started.address,
              signer: started.signer,
              models,
            }),
          );
        else
          printFields(ctx.io, [
            ['serving', started.url],
            ['provider', started.address],
            ['signer', started.signer],
            ...models.map((id): [string, string] => ['model', id]),
          ]);
        await ctx.untilStopped;
      } finally {
        // Finishes requests in flight, commits the open batch and redeems vouchers.
        await started.stop();
      }
    });
  return node;
}
