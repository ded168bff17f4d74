import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadNodeConfig, parseNodeConfig } from '../../src/node/index.js';
import { isGlassboxError } from '../../src/protocol/errors.js';
import { tempDir } from './support.js';

const KEY = `0x${'11'.repeat(32)}`;
const base = {
  chain: { rpcUrl: 'http://127.0.0.1:8545', chainId: 31337, deploymentFile: 'deployment.json' },
  keys: { stakingKey: KEY },
  dataDir: 'data',
  models: [{ model: './models/iris', price: '1000' }],
  stake: '100000000000000000000',
};

function fieldOf(input: unknown): string | undefined {
  try {
    parseNodeConfig(input);
  } catch (error) {
    if (isGlassboxError(error, 'CONFIG_INVALID')) return error.field;
    throw error;
  }
  return undefined;
}

describe('node config', () => {
  it('fills defaults', () => {
    const c = parseNodeConfig(base);
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 0 });
    expect(c.bodyLimitBytes).toBe(16 * 1024 * 1024);
    expect(c.models[0]!.price).toBe(1000n);
    expect(c.models[0]!.inputPrice).toBeUndefined(); // per model format: 0 for a tensor model
    expect(parseNodeConfig({ ...base, defaultInputPrice: '25' }).defaultInputPrice).toBe(25n);
    expect(c.stake).toBe(100n * 10n ** 18n);
    expect(c.batch).toEqual({ maxReceipts: 256, maxAgeMs: 10_000 });
    // the roles' event reader: every block on the devnet, at most 5,000 blocks per getLogs
    expect(c.chain).toMatchObject({ confirmations: 0, maxLogBlockRange: 5000 });
  });

  it('names the offending field', () => {
    expect(fieldOf({ ...base, keys: undefined })).toBe('keys');
    expect(fieldOf({ ...base, keys: { stakingKey: '0x12' } })).toBe('keys.stakingKey');
    expect(fieldOf({ ...base, models: [{ model: 'x', price: '1.5' }] })).toBe('models.0.price');
    expect(fieldOf({ ...base, models: [{ model: 'x', price: '1', inputPrice: '-1' }] })).toBe(
      'models.0.inputPrice',
    );
    expect(fieldOf({ ...base, defaultInputPrice: '1e3' })).toBe('defaultInputPrice');
    expect(fieldOf({ ...base, models: [] })).toBe('models');
    expect(fieldOf({ ...base, listen: { port: 70000 } })).toBe('listen.port');
    expect(fieldOf({ ...base, chain: { ...base.chain, rpcUrl: 'nope' } })).toBe('chain.rpcUrl');
    expect(fieldOf({ ...base, chain: { rpcUrl: 'http://x', chainId: 1 } })).toBe('chain.deploymentFile');
    // the fault switches left the config for test decorators (test/support/faults.ts)
    expect(fieldOf({ ...base, fault: { perturb: 1 } })).toBe('fault');
    expect(fieldOf({ ...base, typo: 1 })).toBe('typo');
    expect(fieldOf({ ...base, batch: { maxReceipt: 1 } })).toBe('batch.maxReceipt');
    expect(fieldOf({ ...base, chain: { ...base.chain, confirmations: -1 } })).toBe('chain.confirmations');
    expect(fieldOf({ ...base, chain: { ...base.chain, maxLogBlockRange: 0 } })).toBe(
      'chain.maxLogBlockRange',
    );
  });

  const dirs: { remove(): Promise<void> }[] = [];
  afterAll(async () => {
    for (const d of dirs) await d.remove();
  });

  it('loads a JSON file, resolving relative paths against it', async () => {
    const d = await tempDir();
    dirs.push(d);
    await mkdir(join(d.dir, 'conf'));
    const path = join(d.dir, 'conf', 'node.json');
    await writeFile(
      path,
      JSON.stringify({ ...base, models: [...base.models, { model: 'bafkreiabc', price: '1' }] }),
    );
    const c = await loadNodeConfig(path);
    expect(c.dataDir).toBe(join(d.dir, 'conf', 'data'));
    expect(c.chain.deploymentFile).toBe(join(d.dir, 'conf', 'deployment.json'));
    expect(c.models[0]!.model).toBe(join(d.dir, 'conf', 'models', 'iris'));
    expect(c.models[1]!.model).toBe('bafkreiabc');
    await writeFile(path, '{');
    await expect(loadNodeConfig(path)).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
  });
});
