import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  connect,
  deployGlassbox,
  readChainParams,
  readDeployment,
  startAnvil,
  verifyDeployment,
  writeDeployment,
  DEFAULT_PARAMS,
  MAX_DATA_BYTES,
  type Anvil,
} from '../../src/chain/index.js';
import { isGlassboxError } from '../../src/protocol/errors.js';
import { TEST_PARAMS } from './support.js';

let anvil: Anvil;
beforeAll(async () => {
  anvil = await startAnvil({ chainId: 4242 });
});
afterAll(async () => {
  await anvil?.stop();
});

const expectCode = async (p: Promise<unknown>, code: string) => {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(isGlassboxError(e) && e.code, String(e)).toBe(code);
};

describe('deployGlassbox', () => {
  it('deploys and wires every contract, with the parameters readable on chain', async () => {
    const steps: string[] = [];
    const deployment = await deployGlassbox({
      rpcUrl: anvil.rpcUrl,
      chainId: 4242,
      account: anvil.accounts[0]!.privateKey,
      params: TEST_PARAMS,
      pollingIntervalMs: 5,
      onStep: (s) => steps.push(s),
    });
    expect(steps).toEqual([
      'DevToken',
      'ModelRegistry',
      'ProviderRegistry',
      'PaymentEscrow',
      'ReceiptLedger',
      'DisputeManager',
      'wired',
    ]);
    expect(deployment.chainId).toBe(4242);
    expect(deployment.devToken).toBe(true);
    const client = { ...connect({ rpcUrl: anvil.rpcUrl, chainId: 4242 }), deployment };
    await verifyDeployment(client, deployment);
    const onChain = await readChainParams(client);
    expect(onChain).toEqual({ ...DEFAULT_PARAMS, ...TEST_PARAMS, treasury: anvil.accounts[0]!.address });

    const dir = await mkdtemp(join(tmpdir(), 'glassbox-deploy-'));
    const file = join(dir, 'deployment.json');
    await writeDeployment(file, deployment);
    expect(await readDeployment(file)).toEqual(deployment);
    const json = JSON.parse(await readFile(file, 'utf8'));
    expect(json.schema).toBe('glassbox.deployment/v1');
    expect(json.contracts.receiptLedger).toBe(deployment.contracts.receiptLedger);
  });

  it('uses an existing token and treasury when given', async () => {
    const first = await deployGlassbox({
      rpcUrl: anvil.rpcUrl,
      chainId: 4242,
      account: anvil.accounts[1]!.privateKey,
      pollingIntervalMs: 5,
    });
    const second = await deployGlassbox({
      rpcUrl: anvil.rpcUrl,
      chainId: 4242,
      account: anvil.accounts[1]!.privateKey,
      token: first.contracts.token,
      treasury: anvil.accounts[2]!.address,
      pollingIntervalMs: 5,
    });
    expect(second.contracts.token).toBe(first.contracts.token);
    expect(second.devToken).toBe(false);
    const client = { ...connect({ rpcUrl: anvil.rpcUrl, chainId: 4242 }), deployment: second };
    expect((await readChainParams(client)).treasury).toBe(anvil.accounts[2]!.address);
  });

  it('refuses a chain id the RPC does not serve', async () => {
    await expectCode(
      deployGlassbox({ rpcUrl: anvil.rpcUrl, chainId: 1, account: anvil.accounts[0]!.privateKey }),
      'CHAIN_ID_MISMATCH',
    );
  });

  it('refuses inconsistent parameters before sending anything', async () => {
    for (const params of [
      { unbondingDelayMs: 1000 },
      { slashBps: 10_001 },
      { rewardBps: 10_000 }, // L-5: self-reporting would be free
      { maxDataBytes: MAX_DATA_BYTES + 1 }, // C-1: more than 256 chunks a side, which no answer can publish
      { maxDataBytes: 0 },
      { committeeSize: 0 },
      { minStake: 0n },
      { challengeBond: 0n },
      { commitPeriodMs: 10 },
    ])
      await expectCode(
        deployGlassbox({
          rpcUrl: anvil.rpcUrl,
          chainId: 4242,
          account: anvil.accounts[0]!.privateKey,
          params,
        }),
        'CHAIN_PARAMS_INVALID',
      );
  });

  it('reports an unreachable RPC as CHAIN_RPC', async () => {
    await expectCode(
      deployGlassbox({ rpcUrl: 'http://127.0.0.1:1', chainId: 4242, account: anvil.accounts[0]!.privateKey }),
      'CHAIN_RPC',
    );
  });

  it('rejects malformed addresses files and missing code', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'glassbox-deploy-'));
    const file = join(dir, 'bad.json');
    await writeFile(file, JSON.stringify({ schema: 'glassbox.deployment/v1', chainId: 4242 }));
    await expectCode(readDeployment(file), 'CHAIN_DEPLOYMENT');
    await expectCode(readDeployment(join(dir, 'missing.json')), 'CHAIN_DEPLOYMENT');
    await writeFile(file, '{not json');
    await expectCode(readDeployment(file), 'CHAIN_DEPLOYMENT');
    const deployment = await deployGlassbox({
      rpcUrl: anvil.rpcUrl,
      chainId: 4242,
      account: anvil.accounts[0]!.privateKey,
      pollingIntervalMs: 5,
    });
    const bogus = {
      ...deployment,
      contracts: {
        ...deployment.contracts,
        disputeManager: '0x000000000000000000000000000000000000dEaD' as const,
      },
    };
    const client = { ...connect({ rpcUrl: anvil.rpcUrl, chainId: 4242 }), deployment: bogus };
    await expectCode(verifyDeployment(client, bogus), 'CHAIN_DEPLOYMENT');
  });
});
