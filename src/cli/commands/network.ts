import type { Command } from 'commander';
import type { Address } from 'viem';
import { call } from '../../api/client.js';
import { routes } from '../../api/routes.js';
import { getModel, listProviders, registerModel } from '../../chain/index.js';
import { GlassboxError, isGlassboxError } from '../../protocol/errors.js';
import { closeClient, discoverProviders, verifyReceipt, type Client } from '../../sdk/index.js';
import { resolve } from 'node:path';
import { isModelId, modelIdFromDigest, type ModelId } from '../../protocol/manifest.js';
import { offerModel } from '../../sdk/index.js';
import { readManifest, type BlobStore, type PackModelFileParameters } from '../../store/index.js';
import { parseAmount } from '../args.js';
import {
  adminToken,
  connectionOptions,
  openClient,
  readDevnetProfile,
  resolveConnection,
  type ConnectionFlags,
} from '../connection.js';
import { formatAmount, formatPrices, printFields, toJson, usageError } from '../io.js';
import { copyPackage, openStore, packFromPath } from '../models.js';
import { packOptions, packParameters, type PackFlags } from './model.js';
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
            inputPrice: offers?.get(p.address)?.inputPrice,
            pending: offers?.get(p.address)?.pending,
            ...(await probe(p)),
          })),
        );
        if (flags.json) return ctx.io.out(toJson(rows));
        if (modelId && rows.length === 0) return await noOffer(ctx, client, modelId);
        for (const r of rows)
          printFields(ctx.io, [
            ['provider', `${r.address} ${r.endpoint}`],
            ['stake', `${formatAmount(r.stake)}${r.active ? '' : ' (inactive)'}${r.paused ? ' paused' : ''}`],
            ...(r.price === undefined
              ? []
              : [
                  [
                    'price',
                    `${formatPrices({ price: r.price, inputPrice: r.inputPrice ?? 0n })}${r.pending ? `, rising to ${formatPrices(r.pending)} at ${new Date(r.pending.effectiveAtMs).toISOString()}` : ''}`,
                  ] as [string, string],
                ]),
            ['health', r.healthy ? `up, ${r.latencyMs.toFixed(1)} ms` : `down (${r.error})`],
          ]);
      } finally {
        await closeClient(client);
      }
    });

  connectionOptions(packOptions(commonOptions(model.command('push'))))
    .description(
      "register a model on chain (as --private-key, its owner): an .onnx file or folder is packed into the store first; with --serve, the devnet's providers offer it",
    )
    .argument(
      '<model>',
      'an .onnx file, a folder holding model.onnx and model.json, or a model id in the store',
    )
    .option(
      '--serve',
      'make every provider of the running devnet fetch, verify and offer it (admin API)',
      false,
    )
    .option(
      '--price <amount>',
      "with --serve: the price per inference (an LLM: per output token) in base units (default: each node's defaultPrice)",
    )
    .option(
      '--input-price <amount>',
      "with --serve: an LLM's price per input token in base units (default: each node's defaultInputPrice, else 0)",
    )
    .action(async (ref: string, flags: PushFlags) => {
      const store = openStore(flags.store);
      const { id, manifest } = await packOrRead(store, ref, packParameters(flags));
      const client = await openClient(await resolveConnection(flags));
      let served: ServedBy[] = [];
      let existing: Awaited<ReturnType<typeof getModel>>;
      let tx: Awaited<ReturnType<typeof registerModel>> | undefined;
      try {
        existing = await getModel(client.chain, id);
        tx = existing
          ? undefined
          : await registerModel(client.chain, {
              model: id,
              exact: manifest.policy.kind === 'exact',
              metadata: JSON.stringify({ name: manifest.name, version: manifest.version }),
            });
      } finally {
        await closeClient(client);
      }
      if (flags.serve)
        served = await serveOnDevnet(flags.store, id, {
          price: flags.price === undefined ? undefined : parseAmount(flags.price, '--price'),
          inputPrice:
            flags.inputPrice === undefined ? undefined : parseAmount(flags.inputPrice, '--input-price'),
        });
      if (flags.json)
        return ctx.io.out(toJson({ id, manifest, registered: !existing, transaction: tx?.hash, served }));
      printFields(ctx.io, [
        ['model id', id],
        ['name', `${manifest.name} ${manifest.version}`],
        ['policy', JSON.stringify(manifest.policy)],
        ['on chain', existing ? `already registered by ${existing.owner}` : `registered (tx ${tx!.hash})`],
        ...served.map((s): [string, string] => [
          'served by',
          `${s.url} at ${formatPrices({ price: BigInt(s.price), inputPrice: BigInt(s.inputPrice) }, String)}${s.actions.length ? '' : ' (already offered)'}`,
        ]),
      ]);
    });
}

type PushFlags = ConnectionFlags &
  PackFlags & { json: boolean; store: string; serve: boolean; price?: string; inputPrice?: string };
type ServedBy = { url: string; price: string; inputPrice: string; actions: readonly { action: string }[] };

/** The package a push names: packed from a file or folder, or an id already in the store. */
async function packOrRead(store: BlobStore, ref: string, overrides: PackModelFileParameters) {
  if (!isModelId(ref)) return packFromPath(store, ref, overrides);
  if (Object.keys(overrides).length > 0)
    throw usageError(
      `${ref} is a model id, a finished package: --name, --version, --policy, --description and --license apply to a file or folder`,
    );
  return { id: ref, manifest: await readManifest(store, ref) };
}

/**
 * Makes every provider of the running devnet offer model `id` through its admin API. The providers
 * read the devnet's store (the user's, unless the devnet was started otherwise): a package pushed
 * into another store is copied there first, blob by blob, each re-hashed on the way.
 */
async function serveOnDevnet(
  storeDir: string,
  id: ModelId,
  prices: { price: bigint | undefined; inputPrice: bigint | undefined },
): Promise<ServedBy[]> {
  const profile = await readDevnetProfile();
  if (!profile.providers?.length || !profile.store)
    throw usageError(
      '--serve needs a running `glassbox devnet`; to serve on a real node, run `glassbox node offer <id> --url <node>`',
    );
  if (resolve(profile.store) !== resolve(storeDir))
    await copyPackage(openStore(storeDir), openStore(profile.store), id);
  const served: ServedBy[] = [];
  for (const provider of profile.providers) {
    const token = await adminToken({ dataDir: provider.dataDir });
    const offer = await offerModel({
      url: provider.url,
      token,
      model: id,
      ...(prices.price === undefined ? {} : { price: prices.price }),
      ...(prices.inputPrice === undefined ? {} : { inputPrice: prices.inputPrice }),
    });
    served.push({
      url: provider.url,
      price: offer.price,
      inputPrice: offer.inputPrice,
      actions: offer.actions,
    });
  }
  return served;
}

/** What `providers <model>` says when nobody offers it: plainly, and how to change that. */
async function noOffer(ctx: Context, client: Client, model: string): Promise<void> {
  const registered = await getModel(client.chain, model);
  ctx.io.out(`no active provider offers model ${model}`);
  ctx.io.out(
    registered
      ? `hint: on the devnet, \`glassbox model push ${model} --serve\` makes its providers offer it; a node's operator runs \`glassbox node offer ${model} --url <node>\``
      : `hint: it is not even registered on chain: \`glassbox model push <file.onnx|folder> --serve\` registers it and (on the devnet) serves it`,
  );
}

/** One GET /health, timed, read with the typed client (a 503 while starting or stopping is down). */
async function probe(provider: {
  address: Address;
  endpoint: string;
}): Promise<{ healthy: boolean; latencyMs: number; error?: string }> {
  const started = performance.now();
  const node = {
    endpoint: provider.endpoint,
    name: `provider ${provider.address}`,
    provider: provider.address,
    timeoutMs: 3000,
    maxResponseBytes: 64 * 1024,
  };
  try {
    await call(node, routes.health, {});
    return { healthy: true, latencyMs: performance.now() - started };
  } catch (error) {
    const message = isGlassboxError(error) ? error.shortMessage : String(error);
    return { healthy: false, latencyMs: performance.now() - started, error: message };
  }
}
