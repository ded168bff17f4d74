import { join } from 'node:path';
import { Option, type Command } from 'commander';
import { isHex, type Hex } from 'viem';
import {
  DEFAULT_PARAMS,
  deployGlassbox,
  deploymentToJson,
  startAnvil,
  writeDeployment,
  type ChainParams,
  type Deployment,
} from '../../chain/index.js';
import { runtimeProfileJson, runtimeProfileSchema } from '../../protocol/runtime-profile.js';
import { defaultProfiles } from '../../runtime/index.js';
import { parsePositiveInt, readJsonArgument } from '../args.js';
import { glassboxHome, printFields, toJson, usageError } from '../io.js';
import { jsonOption } from '../options.js';
import type { Context } from '../program.js';

type StartFlags = {
  port?: string;
  chainId: string;
  state?: string;
  deploy: boolean;
  params?: string;
  runtime?: string[];
  out?: string;
  json: boolean;
};
type DeployFlags = {
  rpcUrl?: string;
  rpc?: string;
  chainId: string;
  privateKey?: string;
  token?: Hex;
  treasury?: Hex;
  params?: string;
  runtime?: string[];
  out?: string;
  json: boolean;
};

const RUNTIME_HELP =
  'a runtime profile (JSON or a file) to admit, repeatable (default: the profiles of the engines this build runs, on this machine)';
const collect = (value: string, previous: string[] = []) => [...previous, value];

/**
 * The runtime profiles to admit at deployment, as canonical JSON: those given, each checked
 * against the profile schema, or the profiles this build's engines run under on this machine.
 */
async function runtimesToAdmit(values: readonly string[] | undefined): Promise<string[]> {
  if (!values || values.length === 0) return defaultProfiles().map(runtimeProfileJson);
  const out: string[] = [];
  for (const value of values) {
    const parsed = runtimeProfileSchema.safeParse(await readJsonArgument(value, '--runtime'));
    if (!parsed.success)
      throw usageError(
        `--runtime ${value} is not a runtime profile: ${parsed.error.issues[0]?.message ?? ''}`,
      );
    out.push(runtimeProfileJson(parsed.data));
  }
  return out;
}

export function registerChainCommands(program: Command, ctx: Context): void {
  const chain = program
    .command('chain')
    .description('the local devnet chain and deployments to any EVM chain');

  jsonOption(chain.command('start'))
    .description(
      'start a local anvil chain on a loopback port (optionally deploying Glassbox) and keep it up until Ctrl-C',
    )
    .option('--port <port>', 'loopback port (default: a free one)')
    .option('--chain-id <id>', 'chain id', '31337')
    .option(
      '--state <file>',
      'load the chain from this file and save it there on exit, so the devnet survives restarts',
    )
    .option('--deploy', 'deploy the Glassbox contracts with the first dev account', false)
    .option('--runtime <profile>', RUNTIME_HELP, collect)
    .option(
      '--params <json|file>',
      'deployment parameters overriding the defaults, e.g. {"unbondingDelayMs": 60000}',
    )
    .option('--out <file>', 'where to write the deployment (addresses) file')
    .action(async (flags: StartFlags) => {
      const params =
        flags.params === undefined ? {} : parseParams(await readJsonArgument(flags.params, '--params'));
      const anvil = await startAnvil({
        chainId: parsePositiveInt(flags.chainId, '--chain-id'),
        ...(flags.port === undefined ? {} : { port: parsePositiveInt(flags.port, '--port') }),
        ...(flags.state === undefined ? {} : { stateFile: flags.state }),
      });
      try {
        let deployment: Deployment | undefined;
        let out: string | undefined;
        if (flags.deploy) {
          deployment = await deployGlassbox({
            rpcUrl: anvil.rpcUrl,
            chainId: anvil.chainId,
            account: anvil.accounts[0]!.privateKey,
            params,
            runtimes: await runtimesToAdmit(flags.runtime),
            pollingIntervalMs: 50,
          });
          out = flags.out ?? defaultDeploymentPath(anvil.chainId);
          await writeDeployment(out, deployment);
        }
        if (flags.json) {
          ctx.io.out(
            toJson({
              rpcUrl: anvil.rpcUrl,
              chainId: anvil.chainId,
              accounts: anvil.accounts,
              ...(deployment ? { deployment: deploymentToJson(deployment), deploymentFile: out } : {}),
            }),
          );
        } else {
          printFields(ctx.io, [
            ['rpc url', anvil.rpcUrl],
            ['chain id', String(anvil.chainId)],
            ...anvil.accounts
              .slice(0, 3)
              .map((a, i): [string, string] => [`account ${i}`, `${a.address} key ${a.privateKey}`]),
            ...(deployment ? describeDeployment(deployment, out!) : []),
          ]);
          ctx.io.out(
            `anvil is running (pid ${anvil.pid}); Ctrl-C stops it${flags.state ? ` and saves ${flags.state}` : ''}.`,
          );
        }
        await ctx.untilStopped;
      } finally {
        await anvil.stop();
      }
    });

  jsonOption(chain.command('deploy'))
    .description('deploy and wire the Glassbox contracts on any EVM chain, and write the addresses file')
    .option('--rpc-url <url>', 'JSON-RPC endpoint of the chain (required; --rpc for short)')
    .addOption(new Option('--rpc <url>').hideHelp())
    .requiredOption('--chain-id <id>', 'the chain id the RPC must report (checked before anything is sent)')
    .option('--private-key <key>', 'the deployer key (default: $GLASSBOX_PRIVATE_KEY)')
    .option(
      '--token <address>',
      'an existing ERC-20 to stake and pay in (default: deploy a DevToken with a public mint)',
    )
    .option('--treasury <address>', 'where slashed stake and forfeited bonds go (default: the deployer)')
    .option('--params <json|file>', 'deployment parameters overriding the defaults')
    .option('--runtime <profile>', RUNTIME_HELP, collect)
    .option('--out <file>', 'where to write the deployment (addresses) file')
    .action(async (flags: DeployFlags) => {
      const rpcUrl = flags.rpcUrl ?? flags.rpc;
      if (!rpcUrl) throw usageError('--rpc-url <url> is required');
      const key = flags.privateKey ?? process.env.GLASSBOX_PRIVATE_KEY;
      if (!key || !isHex(key) || key.length !== 66)
        throw usageError('a deployer key is needed: --private-key 0x… (32 bytes) or $GLASSBOX_PRIVATE_KEY');
      const chainId = parsePositiveInt(flags.chainId, '--chain-id');
      const deployment = await deployGlassbox({
        rpcUrl,
        chainId,
        account: key,
        ...(flags.params === undefined
          ? {}
          : { params: parseParams(await readJsonArgument(flags.params, '--params')) }),
        ...(flags.token === undefined ? {} : { token: flags.token }),
        ...(flags.treasury === undefined ? {} : { treasury: flags.treasury }),
        runtimes: await runtimesToAdmit(flags.runtime),
        onStep: (step, address) => {
          if (!flags.json) ctx.io.err(`deployed ${step.padEnd(16)} ${address}`);
        },
      });
      const out = flags.out ?? defaultDeploymentPath(chainId);
      await writeDeployment(out, deployment);
      if (flags.json)
        return ctx.io.out(toJson({ deployment: deploymentToJson(deployment), deploymentFile: out }));
      printFields(ctx.io, describeDeployment(deployment, out));
    });
}

export function defaultDeploymentPath(chainId: number): string {
  return join(glassboxHome(), 'deployments', `${chainId}.json`);
}

function describeDeployment(d: Deployment, file: string): [string, string][] {
  return [
    ...Object.entries(d.contracts).map(([name, address]): [string, string] => [name, address]),
    ['addresses file', file],
  ];
}

/** Deployment parameters from JSON: ms as numbers, amounts as decimal strings or integers. */
function parseParams(json: unknown): Partial<ChainParams> {
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw usageError('--params is not a JSON object');
  const params: Record<string, number | bigint> = {};
  for (const [key, value] of Object.entries(json)) {
    if (!(key in DEFAULT_PARAMS))
      throw usageError(
        `--params.${key} is not a parameter (they are ${Object.keys(DEFAULT_PARAMS).join(', ')})`,
      );
    const isAmount = typeof DEFAULT_PARAMS[key as keyof ChainParams] === 'bigint';
    if (isAmount && (typeof value === 'string' || typeof value === 'number') && /^\d+$/.test(String(value)))
      params[key] = BigInt(value);
    else if (!isAmount && typeof value === 'number' && Number.isSafeInteger(value)) params[key] = value;
    else
      throw usageError(
        `--params.${key} is ${JSON.stringify(value)}, not ${isAmount ? 'a base-unit amount' : 'an integer'}`,
      );
  }
  return params as Partial<ChainParams>;
}
