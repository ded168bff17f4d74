import type { Command } from 'commander';
import { getModel, listProviders, registerModel } from '../../chain/index.js';
import { GlassboxError } from '../../protocol/errors.js';
import { modelIdFromDigest } from '../../protocol/manifest.js';
import { closeClient, discoverProviders, verifyReceipt } from '../../sdk/index.js';
import { connectionOptions, openClient, resolveConnection, type ConnectionFlags } from '../connection.js';
import { formatAmount, printFields, toJson } from '../io.js';
import { openStore, packFromPath } from '../models.js';
import { commonOptions, jsonOption } from '../options.js';
import type { Context } from '../program.js';
import { readSaved } from '../tensors.js';
import { printReport } from './infer.js';

/** `glassbox verify`, `glassbox providers` and `glassbox model push`: the commands that read or write the network. */
export function registerNetworkCommands(program: Command, model: Command, ctx: Context): void {
  connectionOptions(jsonOption(program.command('verify')))
    .description(
      'check a saved receipt: its signature, and against the chain its signer, provider, model and price; with the inputs and outputs saved beside it, their hashes',
    )
    .argument(
      '<file>',
      'a file written by `glassbox infer --save` (with its .inputs.bin and .outputs.bin beside it, or an older one with JSON tensors), or a signed receipt as JSON',
    )
    .action(async (file: string, flags: ConnectionFlags & { json: boolean }) => {
      const saved = await readSaved(file);
      const client = await openClient(await resolveConnection(flags));
      try {
        const reports = [];
        for (const receipt of saved.receipts) {
          reports.push(
            await verifyReceipt(client, {
              receipt,
              model: modelIdFromDigest(receipt.receipt.model),
              requestId: receipt.receipt.requestId,
              ...(saved.inputs ? { inputs: saved.inputs } : {}),
              ...(saved.outputs ? { outputs: saved.outputs } : {}),
            }),
          );
        }
        if (flags.json) ctx.io.out(toJson(reports));
        else
          printReport(ctx, {
            ok: reports.every((r) => r.ok),
            mode: 'receipt',
            receipts: reports,
            rejected: [],
            hedged: false,
          });
        const failed = reports.filter((r) => !r.ok).length;
        if (failed > 0)
          throw new GlassboxError(
            'VERIFICATION_FAILED',
            `${failed} of ${reports.length} receipt(s) failed verification`,
            {
              details: { failed: reports.filter((r) => !r.ok).map((r) => r.requestId) },
            },
          );
      } finally {
        await closeClient(client);
      }
    });

  connectionOptions(jsonOption(program.command('providers')))
    .description('list the providers on chain with stake, price, latency and health')
    .argument('[model]', 'only those offering this model, with their price in force')
    .action(async (modelId: string | undefined, flags: ConnectionFlags & { json: boolean }) => {
      const client = await openClient(await resolveConnection(flags));
      try {
        const offers = modelId
          ? new Map((await discoverProviders(client, { model: modelId })).map((c) => [c.address, c]))
          : undefined;
        const providers = (await listProviders(client.chain)).filter((p) => !offers || offers.has(p.address));
        const rows = await Promise.all(
          providers.map(async (p) => ({
            ...p,
            price: offers?.get(p.address)?.price,
            pending: offers?.get(p.address)?.pending,
            ...(await probe(p.endpoint)),
          })),
        );
        if (flags.json) return ctx.io.out(toJson(rows));
        for (const r of rows)
          printFields(ctx.io, [
            ['provider', `${r.address} ${r.endpoint}`],
            ['stake', `${formatAmount(r.stake)}${r.active ? '' : ' (inactive)'}${r.paused ? ' paused' : ''}`],
            ...(r.price === undefined
              ? []
              : [
                  [
                    'price',
                    `${formatAmount(r.price)}${r.pending ? `, rising to ${formatAmount(r.pending.price)} at ${new Date(r.pending.effectiveAtMs).toISOString()}` : ''}`,
                  ] as [string, string],
                ]),
            ['health', r.healthy ? `up, ${r.latencyMs.toFixed(1)} ms` : `down (${r.error})`],
          ]);
      } finally {
        await closeClient(client);
      }
    });

  connectionOptions(commonOptions(model.command('push')))
    .description('pack a model, store it, and register it on chain (as --private-key, its owner)')
    .argument('<path>', 'an .onnx file, or a folder holding model.onnx and model.json')
    .action(async (path: string, flags: ConnectionFlags & { json: boolean; store: string }) => {
      const { id, manifest } = await packFromPath(openStore(flags.store), path, {});
      const client = await openClient(await resolveConnection(flags));
      try {
        const existing = await getModel(client.chain, id);
        const tx = existing
          ? undefined
          : await registerModel(client.chain, {
              model: id,
              exact: manifest.policy.kind === 'exact',
              metadata: JSON.stringify({ name: manifest.name, version: manifest.version }),
            });
        if (flags.json)
          return ctx.io.out(toJson({ id, manifest, registered: !existing, transaction: tx?.hash }));
        printFields(ctx.io, [
          ['model id', id],
          ['name', `${manifest.name} ${manifest.version}`],
          ['on chain', existing ? `already registered by ${existing.owner}` : `registered (tx ${tx!.hash})`],
        ]);
      } finally {
        await closeClient(client);
      }
    });
}

/** One GET /health, timed. */
async function probe(endpoint: string): Promise<{ healthy: boolean; latencyMs: number; error?: string }> {
  const started = performance.now();
  try {
    const response = await fetch(new URL('/health', endpoint), { signal: AbortSignal.timeout(3000) });
    return {
      healthy: response.ok,
      latencyMs: performance.now() - started,
      ...(response.ok ? {} : { error: `HTTP ${response.status}` }),
    };
  } catch (error) {
    return { healthy: false, latencyMs: performance.now() - started, error: (error as Error).message };
  }
}
