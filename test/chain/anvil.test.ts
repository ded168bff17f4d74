import { mkdtemp, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { devAccounts, freePort, resolveAnvilBinary, startAnvil } from '../../src/chain/index.js';
import { isGlassboxError } from '../../src/protocol/errors.js';

const rpc = async (url: string, method: string, params: unknown[] = []) => {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  });
  return ((await res.json()) as { result: unknown }).result;
};

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('anvil', () => {
  it('resolves the binary from the npm package', () => {
    expect(existsSync(resolveAnvilBinary())).toBe(true);
  });

  it('starts on a free loopback port with deterministic accounts and stops cleanly', async () => {
    const anvil = await startAnvil({ chainId: 777, accounts: 3 });
    expect(anvil.rpcUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(await rpc(anvil.rpcUrl, 'eth_chainId')).toBe('0x309');
    expect(anvil.accounts.map((a) => a.address)).toEqual(devAccounts(3).map((a) => a.address));
    expect(anvil.accounts[0]!.address).toBe('0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266');
    const accounts = (await rpc(anvil.rpcUrl, 'eth_accounts')) as string[];
    expect(accounts.map((a) => a.toLowerCase())).toEqual(anvil.accounts.map((a) => a.address.toLowerCase()));
    await anvil.stop();
    await anvil.stop(); // idempotent
    expect(alive(anvil.pid)).toBe(false);
  });

  it('runs two chains side by side', async () => {
    const [a, b] = await Promise.all([startAnvil(), startAnvil()]);
    expect(a!.port).not.toBe(b!.port);
    await Promise.all([a!.stop(), b!.stop()]);
  });

  it('keeps the chain in a state file across restarts', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'glassbox-anvil-'));
    const stateFile = join(dir, 'state.json');
    const first = await startAnvil({ stateFile });
    await rpc(first.rpcUrl, 'evm_mine');
    await rpc(first.rpcUrl, 'evm_mine');
    const height = await rpc(first.rpcUrl, 'eth_blockNumber');
    expect(height).toBe('0x2');
    await first.stop();
    expect(existsSync(stateFile)).toBe(true);
    const second = await startAnvil({ stateFile });
    expect(await rpc(second.rpcUrl, 'eth_blockNumber')).toBe(height);
    await second.stop();
  });

  it('fails with CHAIN_ANVIL when the port is taken', async () => {
    const held = await startAnvil();
    const error = await startAnvil({ port: held.port, startTimeoutMs: 3000 }).catch((e: unknown) => e);
    expect(isGlassboxError(error, 'CHAIN_ANVIL')).toBe(true);
    expect((error as Error).message).toContain(String(held.port));
    await held.stop();
  });

  it('fails with CHAIN_ANVIL when the binary is missing', async () => {
    const path = process.env.PATH;
    const env = process.env.GLASSBOX_ANVIL;
    process.env.PATH = '';
    delete process.env.GLASSBOX_ANVIL;
    try {
      const error = await startAnvil({ binary: '/nonexistent/anvil' }).then(
        async (started) => (await started.stop(), undefined), // never leave a stray anvil behind
        (e: unknown) => e,
      );
      expect(isGlassboxError(error, 'CHAIN_ANVIL')).toBe(true);
      expect((error as Error).message).toContain('/nonexistent/anvil');
      expect(() => resolveAnvilBinary('/nonexistent/anvil')).toThrow(/not found/);
    } finally {
      process.env.PATH = path;
      if (env !== undefined) process.env.GLASSBOX_ANVIL = env;
    }
  });

  it('fails with CHAIN_ANVIL when the binary exists but does not start', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'glassbox-anvil-'));
    const fake = join(dir, 'anvil');
    await writeFile(fake, '#!/bin/sh\nexit 3\n', { mode: 0o755 });
    const error = await startAnvil({ binary: fake, startTimeoutMs: 3000 }).catch((e: unknown) => e);
    expect(isGlassboxError(error, 'CHAIN_ANVIL')).toBe(true);
    expect((error as Error).message).toMatch(/did not start/);
  });

  it('freePort returns a port that can be bound', async () => {
    const port = await freePort();
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    await new Promise((resolve) => server.close(resolve));
  });
});
