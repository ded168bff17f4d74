import { rm } from 'node:fs/promises';
import type { Command } from 'commander';
import { startDevnet, type Devnet } from '../../devnet/index.js';
import { parseCount, parsePositiveInt } from '../args.js';
import { devnetProfilePath, writeDevnetProfile, type DevnetProfile } from '../connection.js';
import { defaultStoreDir, printFields, toJson } from '../io.js';
import { jsonOption } from '../options.js';
import type { Context } from '../program.js';

type DevnetFlags = { providers: string; verifiers: string; committee: string; dir?: string; json: boolean };

export function registerDevnetCommand(program: Command, ctx: Context): void {
  jsonOption(program.command('devnet'))
    .description(
      'start a local network: anvil, the contracts, funded accounts, the example models and N provider nodes',
    )
    .option('--providers <n>', 'how many provider nodes', '3')
    .option('--verifiers <n>', 'how many verifier nodes (sample, re-execute, challenge)', '0')
    .option('--committee <n>', 'how many staked committee nodes (vote on challenges)', '0')
    .option('--dir <dir>', 'where the devnet keeps its files (default: a new temporary folder)')
    .action(async (flags: DevnetFlags) => {
      // Listening from the start: Ctrl-C while it starts up, or right after its ready line, still
      // stops it cleanly (its processes, its profile, its temporary files).
      const stopped = ctx.untilStopped;
      const devnet = await startDevnet({
        providers: parsePositiveInt(flags.providers, '--providers'),
        verifiers: parseCount(flags.verifiers, '--verifiers'),
        committee: parseCount(flags.committee, '--committee'),
        ...(flags.dir === undefined ? {} : { dir: flags.dir }),
        store: defaultStoreDir(),
        log: flags.json ? undefined : (line) => ctx.io.err(line),
      });
      // Commands run without chain flags talk to this devnet until it stops.
      await writeDevnetProfile(devnetProfile(devnet));
      try {
        if (flags.json) ctx.io.out(toJson(describeDevnet(devnet)));
        else {
          printFields(ctx.io, [
            ['rpc url', devnet.rpcUrl],
            ['chain id', String(devnet.chainId)],
            ['addresses', devnet.deploymentFile],
            ['model store', devnet.store],
            [
              'client key',
              `${devnet.client.privateKey} (${devnet.client.address}, funded, deposit in escrow)`,
            ],
            ...devnet.providers.map((p): [string, string] => [
              `provider ${p.index}`,
              `${p.url} ${p.address}`,
            ]),
            ...devnet.verifiers.map((p, i): [string, string] => [`verifier ${i}`, `${p.url} ${p.address}`]),
            ...devnet.committee.map((p, i): [string, string] => [`committee ${i}`, `${p.url} ${p.address}`]),
            ...devnet.models.map((m): [string, string] => [`model ${m.name}`, m.id]),
          ]);
          ctx.io.out('The devnet is up; Ctrl-C stops it.');
        }
        await stopped;
      } finally {
        await stopDevnet(ctx, devnet);
      }
    });
}

/** Stops a devnet the CLI started and says so: its processes, its profile and its temporary files go. */
export async function stopDevnet(ctx: Context, devnet: Devnet): Promise<void> {
  ctx.io.err('stopping the devnet…');
  await rm(devnetProfilePath(), { force: true });
  await devnet.stop();
  ctx.io.err(
    devnet.temporary ? `stopped; removed ${devnet.dir}` : `stopped; its files stay in ${devnet.dir}`,
  );
}

/** What commands run beside the devnet read (src/cli/connection.ts). */
export function devnetProfile(devnet: Devnet): DevnetProfile {
  return {
    rpcUrl: devnet.rpcUrl,
    chainId: devnet.chainId,
    deploymentFile: devnet.deploymentFile,
    privateKey: devnet.client.privateKey,
    store: devnet.store,
    providers: devnet.providers.map((p) => ({ url: p.url, dataDir: p.dataDir })),
  };
}

/** The one JSON line `glassbox devnet --json` prints: everything a client needs to connect. */
export function describeDevnet(devnet: Devnet) {
  return {
    rpcUrl: devnet.rpcUrl,
    chainId: devnet.chainId,
    deploymentFile: devnet.deploymentFile,
    dir: devnet.dir,
    store: devnet.store,
    contracts: devnet.deployment.contracts,
    providers: devnet.providers.map((p) => ({ url: p.url, address: p.address, signer: p.signer })),
    verifiers: devnet.verifiers.map((p) => ({ url: p.url, address: p.address })),
    committee: devnet.committee.map((p) => ({ url: p.url, address: p.address })),
    models: Object.fromEntries(devnet.models.map((m) => [m.name, m.id])),
    client: devnet.client,
  };
}
