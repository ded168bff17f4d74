import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Command } from 'commander';
import { isHex, type Hex } from 'viem';
import { connect, readDeployment, type GlassboxClient } from '../chain/index.js';
import { adminTokenPath, readAdminToken } from '../node/index.js';
import { createClient, type Client } from '../sdk/index.js';
import { parsePositiveInt } from './args.js';
import { glassboxHome, usageError } from './io.js';

/*
 * How commands reach a chain: --rpc-url, --chain-id, --deployment and --private-key, each falling
 * back to $GLASSBOX_RPC_URL, $GLASSBOX_CHAIN_ID, $GLASSBOX_DEPLOYMENT, $GLASSBOX_PRIVATE_KEY, and
 * then to the profile `glassbox devnet` writes (~/.glassbox/devnet.json), so that the commands
 * work against a running devnet without flags.
 */

export type ConnectionFlags = { rpcUrl?: string; chainId?: string; deployment?: string; privateKey?: string };

export type Connection = { rpcUrl: string; chainId: number; deploymentFile: string; privateKey?: Hex };

export function devnetProfilePath(): string {
  return join(glassboxHome(), 'devnet.json');
}

/**
 * What `glassbox devnet` writes for the commands run beside it: the chain, the client's key, the
 * model store its providers read (the user's store, so that `model inspect`, `run` and `model push`
 * see the devnet's models), and each provider's URL and data dir (where its admin token is).
 */
export type DevnetProfile = Required<Connection> & {
  readonly store: string;
  readonly providers: readonly { readonly url: string; readonly dataDir: string }[];
};

export async function writeDevnetProfile(profile: DevnetProfile): Promise<void> {
  await mkdir(dirname(devnetProfilePath()), { recursive: true });
  await writeFile(devnetProfilePath(), JSON.stringify(profile, null, 2) + '\n');
}

/** The running devnet's profile, if there is one. */
export async function readDevnetProfile(): Promise<Partial<DevnetProfile>> {
  return readFile(devnetProfilePath(), 'utf8').then(
    (text) => JSON.parse(text) as Partial<DevnetProfile>,
    () => ({}),
  );
}

export function connectionOptions(command: Command): Command {
  return command
    .option(
      '--rpc-url <url>',
      'JSON-RPC endpoint of the chain ($GLASSBOX_RPC_URL; default: the running devnet)',
    )
    .option('--chain-id <id>', 'chain id ($GLASSBOX_CHAIN_ID)')
    .option('--deployment <file>', 'the addresses file of `glassbox chain deploy` ($GLASSBOX_DEPLOYMENT)')
    .option('--private-key <key>', 'the account to act as ($GLASSBOX_PRIVATE_KEY)');
}

export async function resolveConnection(flags: ConnectionFlags): Promise<Connection> {
  const profile = await readDevnetProfile();
  const env = process.env;
  const rpcUrl = flags.rpcUrl ?? env.GLASSBOX_RPC_URL ?? profile.rpcUrl;
  const chainId = flags.chainId ?? env.GLASSBOX_CHAIN_ID ?? profile.chainId?.toString();
  const deploymentFile = flags.deployment ?? env.GLASSBOX_DEPLOYMENT ?? profile.deploymentFile;
  const privateKey = flags.privateKey ?? env.GLASSBOX_PRIVATE_KEY ?? profile.privateKey;
  if (!rpcUrl || !chainId || !deploymentFile)
    throw usageError(
      'no chain to talk to: pass --rpc-url, --chain-id and --deployment, or start `glassbox devnet`',
    );
  if (privateKey !== undefined && !(isHex(privateKey) && privateKey.length === 66))
    throw usageError('--private-key is not a 32-byte 0x-hex key');
  return {
    rpcUrl,
    chainId: parsePositiveInt(chainId, '--chain-id'),
    deploymentFile,
    ...(privateKey ? { privateKey } : {}),
  };
}

/** A client of the network acting as the connection's account. */
export async function openClient(
  connection: Connection,
  extra: { store?: Parameters<typeof createClient>[0]['store'] } = {},
): Promise<Client> {
  if (!connection.privateKey)
    throw usageError('this command acts on chain: pass --private-key or set $GLASSBOX_PRIVATE_KEY');
  return createClient({
    rpcUrl: connection.rpcUrl,
    chainId: connection.chainId,
    deploymentFile: connection.deploymentFile,
    account: connection.privateKey,
    ...extra,
  });
}

/** A read-only view of the chain: no key needed (commands that only read, like `disputes`). */
export async function openChain(connection: Connection): Promise<GlassboxClient> {
  const deployment = await readDeployment(connection.deploymentFile);
  return { ...connect({ rpcUrl: connection.rpcUrl, chainId: connection.chainId }), deployment };
}

/**
 * A node's admin token: --token, else $GLASSBOX_ADMIN_TOKEN, else the file the node wrote into its
 * data dir (--data-dir; the devnet's providers' data dirs are in its profile).
 */
export async function adminToken(flags: { token?: string; dataDir?: string }): Promise<string> {
  const given = flags.token ?? process.env.GLASSBOX_ADMIN_TOKEN;
  if (given) return given;
  if (flags.dataDir === undefined)
    throw usageError(
      "no admin token: pass --token, set $GLASSBOX_ADMIN_TOKEN, or pass the node's --data-dir",
    );
  const token = await readAdminToken(flags.dataDir);
  if (token === undefined)
    throw usageError(`no admin token at ${adminTokenPath(flags.dataDir)}: has the node started once?`);
  return token;
}
