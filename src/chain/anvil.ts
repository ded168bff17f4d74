import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { delimiter, dirname, join } from 'node:path';
import { toHex, type Address, type Hex } from 'viem';
import { mnemonicToAccount } from 'viem/accounts';
import { GlassboxError } from '../protocol/errors.js';

/** anvil's default mnemonic: its accounts are the well-known, publicly known dev keys. */
export const ANVIL_MNEMONIC = 'test test test test test test test test test test test junk';

export type DevAccount = { readonly address: Address; readonly privateKey: Hex };

export type AnvilOptions = {
  /** Loopback port; default: a free one. */
  readonly port?: number;
  readonly host?: string;
  readonly chainId?: number;
  /** Load the chain from this file if it exists and dump it there on stop, so a devnet survives restarts. */
  readonly stateFile?: string;
  /** Number of funded dev accounts (default 10). */
  readonly accounts?: number;
  readonly mnemonic?: string;
  /** Mine a block every this many ms instead of on each transaction. */
  readonly blockTimeMs?: number;
  /** Path of the anvil binary (default: from @foundry-rs/anvil, $GLASSBOX_ANVIL, or PATH). */
  readonly binary?: string;
  /** How long to wait for the RPC to answer (default 15 s). */
  readonly startTimeoutMs?: number;
};

export type Anvil = {
  readonly rpcUrl: string;
  readonly host: string;
  readonly port: number;
  readonly chainId: number;
  readonly pid: number;
  /** The funded dev accounts, derived from the mnemonic. */
  readonly accounts: readonly DevAccount[];
  /** Stops anvil (SIGTERM, then SIGKILL after 5 s); with a state file, anvil dumps it first. */
  stop(): Promise<void>;
};

const PLATFORM: Record<string, string> = { linux: 'linux', darwin: 'darwin', win32: 'win32' };
const ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64' };

/**
 * Finds the anvil binary: an explicit path (used as given: missing is an error, never a silent
 * fallback to another anvil), else $GLASSBOX_ANVIL, the npm platform package, then PATH.
 * Only the linux-amd64 package is an (optional) dependency: the registry serves no other platform's,
 * and a lock file naming missing packages breaks `npm ci`. Elsewhere, install Foundry's anvil.
 */
export function resolveAnvilBinary(explicit?: string): string {
  const exe = process.platform === 'win32' ? 'anvil.exe' : 'anvil';
  if (explicit) {
    if (existsSync(explicit)) return explicit;
    throw new GlassboxError('CHAIN_ANVIL', `anvil was not found at ${explicit}`, {
      metaMessages: ['give the path of an anvil binary, or leave it out to use the one from npm or PATH'],
      details: { binary: explicit },
    });
  }
  const candidates: string[] = [];
  if (process.env.GLASSBOX_ANVIL) candidates.push(process.env.GLASSBOX_ANVIL);
  const require = createRequire(import.meta.url);
  const platform = PLATFORM[process.platform];
  const arch = ARCH[process.arch];
  if (platform && arch) {
    try {
      const pkg = require.resolve(`@foundry-rs/anvil-${platform}-${arch}/package.json`);
      candidates.push(join(dirname(pkg), 'bin', exe));
    } catch {
      // the platform package is optional; fall through
    }
  }
  for (const dir of (process.env.PATH ?? '').split(delimiter)) if (dir) candidates.push(join(dir, exe));
  const found = candidates.find((c) => existsSync(c));
  if (!found)
    throw new GlassboxError('CHAIN_ANVIL', 'anvil was not found', {
      metaMessages: ['install Foundry (anvil on PATH), or set GLASSBOX_ANVIL to the binary'],
    });
  return found;
}

/** A port that was free a moment ago on `host`. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export function devAccounts(count: number, mnemonic = ANVIL_MNEMONIC): DevAccount[] {
  return Array.from({ length: count }, (_, i) => {
    const account = mnemonicToAccount(mnemonic, { addressIndex: i });
    return { address: account.address, privateKey: toHex(account.getHdKey().privateKey!) };
  });
}

async function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

async function rpcReady(rpcUrl: string): Promise<boolean> {
  try {
    const res = await fetch(rpcUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] }),
      signal: AbortSignal.timeout(1000),
    });
    return res.ok;
  } catch {
    return false;
  }
}

async function startOnce(binary: string, options: AnvilOptions, port: number): Promise<Anvil> {
  const host = options.host ?? '127.0.0.1';
  const chainId = options.chainId ?? 31337;
  const count = options.accounts ?? 10;
  const mnemonic = options.mnemonic ?? ANVIL_MNEMONIC;
  if (!(await portFree(host, port)))
    throw new GlassboxError('CHAIN_ANVIL', `port ${port} on ${host} is already in use`, {
      details: { port },
    });
  const args = ['--host', host, '--port', String(port), '--chain-id', String(chainId)];
  args.push('--accounts', String(count), '--mnemonic', mnemonic, '--silent');
  if (options.stateFile) args.push('--state', options.stateFile);
  if (options.blockTimeMs !== undefined) args.push('--block-time', String(options.blockTimeMs / 1000));
  const child: ChildProcess = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  let exited: number | null | undefined;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', (code) => {
      exited = code;
      resolve();
    }),
  );
  child.once('error', (error) => {
    stderr += String(error);
    exited = -1;
  });
  const rpcUrl = `http://${host}:${port}`;
  const deadline = Date.now() + (options.startTimeoutMs ?? 15_000);
  while (exited !== undefined || !(await rpcReady(rpcUrl))) {
    if (exited !== undefined || Date.now() > deadline) {
      if (exited === undefined) child.kill('SIGKILL');
      throw new GlassboxError('CHAIN_ANVIL', `anvil did not start on ${rpcUrl}`, {
        metaMessages: stderr ? [stderr.trim()] : [],
        details: { port, stderr },
      });
    }
    await new Promise((r) => setTimeout(r, 15));
  }
  let stopping: Promise<void> | undefined;
  return {
    rpcUrl,
    host,
    port,
    chainId,
    pid: child.pid!,
    accounts: devAccounts(count, mnemonic),
    stop: () =>
      (stopping ??= (async () => {
        if (exited !== undefined) return;
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exit;
        clearTimeout(timer);
      })()),
  };
}

/** Starts anvil on a free loopback port (or `options.port`) and waits until its RPC answers. */
export async function startAnvil(options: AnvilOptions = {}): Promise<Anvil> {
  const binary = resolveAnvilBinary(options.binary);
  if (options.port !== undefined) return startOnce(binary, options, options.port);
  let last: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce(binary, options, await freePort(options.host));
    } catch (error) {
      last = error; // another process took the port between probing and binding
    }
  }
  throw last;
}
