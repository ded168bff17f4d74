import type { Command } from 'commander';
import { loadNodeConfig, startNode } from '../../node/index.js';
import { offerModel, withdrawModel } from '../../sdk/index.js';
import { parseAmount } from '../args.js';
import { adminToken } from '../connection.js';
import { formatPrices, printFields, toJson } from '../io.js';
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
      const config = await loadNodeConfig(flags.config);
      const token = config.adminToken ?? process.env.GLASSBOX_ADMIN_TOKEN;
      const started = await startNode({ ...config, ...(token === undefined ? {} : { adminToken: token }) });
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
  adminOptions(node.command('offer'))
    .description(
      'make a running node fetch, verify, load and offer a model, and serve it at once (its admin API; kept across restarts)',
    )
    .argument('<model>', 'a model id registered on chain')
    .option(
      '--price <amount>',
      "price per inference (an LLM: per output token) in base units (default: the node's defaultPrice)",
    )
    .option(
      '--input-price <amount>',
      "an LLM's price per input token in base units (default: the node's defaultInputPrice, else 0)",
    )
    .option(
      '--from <url...>',
      'where the node may fetch the package (nodes serving GET /v1/blobs/:cid), before its peers',
    )
    .action(
      async (model: string, flags: AdminFlags & { price?: string; inputPrice?: string; from?: string[] }) => {
        const offer = await offerModel({
          url: flags.url,
          token: await adminToken(flags),
          model,
          ...(flags.price === undefined ? {} : { price: parseAmount(flags.price, '--price') }),
          ...(flags.inputPrice === undefined
            ? {}
            : { inputPrice: parseAmount(flags.inputPrice, '--input-price') }),
          ...(flags.from === undefined ? {} : { from: flags.from }),
        });
        if (flags.json) return ctx.io.out(toJson(offer));
        printFields(ctx.io, [
          ['model', `${offer.model} (${offer.name} ${offer.version})`],
          [
            'offered by',
            `${flags.url} at ${formatPrices({ price: BigInt(offer.price), inputPrice: BigInt(offer.inputPrice) }, String)}`,
          ],
          ['on chain', actionsLine(offer.actions)],
        ]);
      },
    );

  adminOptions(node.command('withdraw'))
    .description('make a running node withdraw its offer of a model on chain and stop serving it')
    .argument('<model>', 'a model id the node serves')
    .action(async (model: string, flags: AdminFlags) => {
      const removed = await withdrawModel({ url: flags.url, token: await adminToken(flags), model });
      if (flags.json) return ctx.io.out(toJson(removed));
      printFields(ctx.io, [
        ['model', removed.model],
        ['on chain', actionsLine(removed.actions)],
      ]);
    });
  return node;
}

type AdminFlags = { url: string; token?: string; dataDir?: string; json: boolean };

/** The flags of the commands that use a node's admin API. */
function adminOptions(command: Command): Command {
  return jsonOption(command)
    .requiredOption('--url <url>', "the node's URL")
    .option('--token <token>', "the node's admin token ($GLASSBOX_ADMIN_TOKEN)")
    .option(
      '--data-dir <dir>',
      "the node's data dir, to read its admin-token file (when run on its machine)",
    );
}

function actionsLine(actions: readonly { action: string; detail?: string }[]): string {
  return actions.length === 0 ? 'nothing to change' : actions.map((a) => a.action).join(', ');
}
