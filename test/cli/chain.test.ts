import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { connect, readDeployment, startAnvil, verifyDeployment } from '../../src/chain/index.js';
import { runCli } from '../../src/cli/program.js';

const dir = mkdtempSync(join(tmpdir(), 'glassbox-cli-chain-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function glassbox(argv: string[], untilStopped?: () => Promise<void>) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(argv, { out: (l) => out.push(l), err: (l) => err.push(l) }, untilStopped);
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('glassbox chain deploy', () => {
  it('deploys to the RPC URL and chain id given, and writes an addresses file that checks out on chain', async () => {
    const anvil = await startAnvil({ chainId: 4242 });
    try {
      const out = join(dir, 'deployment.json');
      const key = anvil.accounts[0]!.privateKey;
      const result = await glassbox([
        'chain',
        'deploy',
        '--rpc-url',
        anvil.rpcUrl,
        '--chain-id',
        '4242',
        '--private-key',
        key,
        '--out',
        out,
        '--params',
        '{"unbondingDelayMs": 518400000, "minStake": "5"}',
        '--json',
      ]);
      expect(result.err).toBe('');
      expect(result.code).toBe(0);
      const printed = JSON.parse(result.out);
      expect(printed.deploymentFile).toBe(out);
      const deployment = await readDeployment(out);
      expect(deployment.chainId).toBe(4242);
      expect(deployment.params.minStake).toBe(5n);
      expect(printed.deployment.contracts).toEqual(JSON.parse(readFileSync(out, 'utf8')).contracts);
      await verifyDeployment(connect({ rpcUrl: anvil.rpcUrl, chainId: 4242 }), deployment);
    } finally {
      await anvil.stop();
    }
  });

  it('refuses a chain id the RPC does not report, before sending anything', async () => {
    const anvil = await startAnvil({ chainId: 4243 });
    try {
      const key = anvil.accounts[0]!.privateKey;
      const result = await glassbox([
        'chain',
        'deploy',
        '--rpc',
        anvil.rpcUrl,
        '--chain-id',
        '1',
        '--private-key',
        key,
        '--out',
        join(dir, 'x.json'),
      ]);
      expect(result.code).toBe(1);
      expect(result.err).toMatch(/\[CHAIN_ID_MISMATCH\]/);
    } finally {
      await anvil.stop();
    }
  });

  it('refuses a missing key and unknown parameters with a usage error', async () => {
    const noKey = await glassbox(['chain', 'deploy', '--rpc-url', 'http://127.0.0.1:1', '--chain-id', '1']);
    expect(noKey.err).toMatch(/a deployer key is needed.*\[USAGE\]/);
    const badParam = await glassbox([
      'chain',
      'deploy',
      '--rpc-url',
      'http://127.0.0.1:1',
      '--chain-id',
      '1',
      '--private-key',
      `0x${'11'.repeat(32)}`,
      '--params',
      '{"speed": 1}',
    ]);
    expect(badParam.err).toMatch(/--params\.speed is not a parameter/);
  });
});

describe('glassbox chain start', () => {
  it('starts anvil, deploys, prints what it started, and stops cleanly when told to', async () => {
    let stop!: () => void;
    const stopped = new Promise<void>((resolve) => (stop = resolve));
    const out = join(dir, 'devnet.json');
    const running = glassbox(['chain', 'start', '--deploy', '--out', out, '--json'], () => stopped);
    // The command prints once the chain is up and deployed, then waits to be stopped.
    let deployment;
    for (let i = 0; i < 200 && !deployment; i++) {
      await new Promise((r) => setTimeout(r, 50));
      deployment = await readDeployment(out).catch(() => undefined);
    }
    expect(deployment).toBeDefined();
    stop();
    const result = await running;
    expect(result.code).toBe(0);
    const printed = JSON.parse(result.out);
    expect(printed.chainId).toBe(31337);
    expect(printed.accounts).toHaveLength(10);
    await verifyDeployment(connect({ rpcUrl: printed.rpcUrl, chainId: 31337 }), deployment!).then(
      () => expect.unreachable('anvil should be stopped'),
      (error: unknown) => expect(error).toMatchObject({ code: 'CHAIN_RPC' }),
    );
  });
});
