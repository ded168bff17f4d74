import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/program.js';
import { startDevnet, type Devnet } from '../../src/devnet/index.js';
import { decodeTensors, encodeTensors, tensorsToJson } from '../../src/protocol/encoding.js';
import { devnetCli } from '../support/devnet.js';
import { exampleDir } from '../support/examples.js';

/** The built CLI (npm run build), as users run it. */
const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

/* The network commands of the CLI, against a devnet of two provider processes. */
let devnet: Devnet;
const dir = mkdtempSync(join(tmpdir(), 'glassbox-cli-e2e-'));

beforeAll(async () => {
  devnet = await startDevnet({
    providers: 2,
    models: [exampleDir('iris')],
    nodeConfig: { logLevel: 'error' },
  });
}, 120_000);
afterAll(async () => {
  await devnet?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const glassbox = (...argv: string[]) => devnetCli(devnet, ...argv);

describe('glassbox over a devnet', () => {
  it('infer prints the class and the verification report, and saves what verify checks again', async () => {
    const iris = devnet.models[0]!.id;
    const saved = join(dir, 'answer.json');
    const result = await glassbox(
      'infer',
      iris,
      '--input',
      '{"features": [[6.3, 3.3, 6.0, 2.5]]}',
      '--quorum',
      '2',
      '--save',
      saved,
    );
    expect(result.code).toBe(0);
    expect(result.out).toMatch(/^label\s+int64\[1\] \["2"\]$/m);
    expect(result.out.match(/: verified \(price/g)).toHaveLength(2);
    expect(result.out).not.toMatch(/FAIL/);

    const verified = await glassbox('verify', saved);
    expect(verified.code).toBe(0);
    expect(verified.out.match(/: verified/g)).toHaveLength(2);

    // One changed byte: the signature no longer recovers to the provider's key, the hash no longer matches.
    const json = JSON.parse(readFileSync(saved, 'utf8'));
    const hash: string = json.receipts[0].receipt.outputHash;
    json.receipts[0].receipt.outputHash = hash.slice(0, -1) + (hash.endsWith('0') ? '1' : '0');
    writeFileSync(saved, JSON.stringify(json));
    const tampered = await glassbox('verify', saved);
    expect(tampered.code).toBe(1);
    expect(tampered.err).toMatch(/^error: 1 of 2 receipt\(s\) failed verification \[VERIFICATION_FAILED\]/);
    expect(tampered.out).toMatch(/FAIL signer\s+0x[0-9a-fA-F]{40} is not a signing key registered by/);
    expect(tampered.out).toMatch(
      /FAIL outputHash\s+receipt outputHash .* is not the hash of the outputs received/,
    );
  });

  it('--save writes the tensors binary beside the receipts; verify reads that form and the older JSON one', async () => {
    const iris = devnet.models[0]!.id;
    const input = join(dir, 'flowers.bin');
    const features = new Float32Array([5.1, 3.5, 1.4, 0.2, 6.3, 3.3, 6.0, 2.5]);
    writeFileSync(input, encodeTensors({ features: { dtype: 'float32', shape: [2, 4], data: features } }));
    const saved = join(dir, 'flowers.json');
    const result = await glassbox('infer', iris, '--input', input, '--save', saved);
    expect(result.code).toBe(0);
    expect(result.out).toMatch(/^label\s+int64\[2\] \["0","2"\]$/m);

    // the receipts as JSON, the tensors in their canonical encoding beside them
    const json = JSON.parse(readFileSync(saved, 'utf8'));
    expect(json).toEqual({
      model: iris,
      receipts: [expect.objectContaining({ signature: expect.stringMatching(/^0x/) })],
      inputsFile: 'flowers.inputs.bin',
      outputsFile: 'flowers.outputs.bin',
    });
    expect(readFileSync(join(dir, 'flowers.inputs.bin')).equals(readFileSync(input))).toBe(true);
    const outputs = decodeTensors(new Uint8Array(readFileSync(join(dir, 'flowers.outputs.bin'))));
    expect((await glassbox('verify', saved)).out).toMatch(
      /ok\s+outputHash\s+outputHash 0x.* recomputed from the outputs received/,
    );

    // the older form: one JSON file with the tensors as JSON
    const old = join(dir, 'old.json');
    const inputs = decodeTensors(new Uint8Array(readFileSync(input)));
    writeFileSync(
      old,
      JSON.stringify({
        model: iris,
        inputs: tensorsToJson(inputs),
        outputs: tensorsToJson(outputs),
        receipts: json.receipts,
      }),
    );
    const verifiedOld = await glassbox('verify', old);
    expect(verifiedOld.code).toBe(0);
    expect(verifiedOld.out).toMatch(/ok\s+inputHash\s+inputHash 0x.* recomputed from the inputs sent/);

    // one changed output byte fails the outputHash check; a missing tensor file is named
    const tampered = readFileSync(join(dir, 'flowers.outputs.bin'));
    tampered[tampered.length - 1]! ^= 1;
    writeFileSync(join(dir, 'flowers.outputs.bin'), tampered);
    const bad = await glassbox('verify', saved);
    expect(bad.code).toBe(1);
    expect(bad.out).toMatch(
      /FAIL outputHash\s+receipt outputHash .* is not the hash of the outputs received/,
    );
    rmSync(join(dir, 'flowers.inputs.bin'));
    expect(existsSync(join(dir, 'flowers.inputs.bin'))).toBe(false);
    expect((await glassbox('verify', saved)).err).toMatch(
      /^error: .*flowers\.json names inputs file .*flowers\.inputs\.bin is not a readable file \[USAGE\]/,
    );
  });

  it('providers lists stake, price in force and health', async () => {
    const result = await glassbox('providers', devnet.models[0]!.id, '--json');
    const rows = JSON.parse(result.out) as {
      address: string;
      price: string;
      inputPrice: string;
      healthy: boolean;
      stake: string;
    }[];
    expect(rows.map((r) => r.address).sort()).toEqual(devnet.providers.map((p) => p.address).sort());
    for (const r of rows) {
      expect(r.healthy).toBe(true);
      expect(r.price).toBe('1000000000000000');
      expect(r.inputPrice).toBe('0'); // a tensor model: per inference
      expect(r.stake).toBe((1000n * 10n ** 18n).toString());
    }
    // For people, every amount in tokens and in the base units that --max-price takes.
    const text = (await glassbox('providers', devnet.models[0]!.id)).out;
    expect(text).toMatch(/^stake\s+1000 tokens \(1000000000000000000000 base units\)$/m);
    expect(text).toMatch(/^price\s+0\.001 tokens \(1000000000000000 base units\)$/m);
  });

  it('model push registers a new model once, and says so the second time', async () => {
    const store = join(dir, 'store');
    const first = JSON.parse(
      (await glassbox('model', 'push', exampleDir('cnn'), '--store', store, '--json')).out,
    );
    expect(first).toMatchObject({ registered: true, manifest: { name: 'cnn' } });
    const again = await glassbox('model', 'push', exampleDir('cnn'), '--store', store);
    expect(again.out).toMatch(/on chain\s+already registered by 0x/);
  });

  it('refuses to act without a chain, with a hint', async () => {
    const home = process.env.GLASSBOX_HOME;
    process.env.GLASSBOX_HOME = dir; // no devnet profile there
    try {
      const err: string[] = [];
      const code = await runCli(['infer', devnet.models[0]!.id, '--input', '{}'], {
        out: () => undefined,
        err: (l) => err.push(l),
      });
      expect(code).toBe(1);
      expect(err.join('\n')).toMatch(
        /^error: no chain to talk to: pass --rpc-url, --chain-id and --deployment, or start `glassbox devnet` \[USAGE\]/,
      );
    } finally {
      if (home === undefined) delete process.env.GLASSBOX_HOME;
      else process.env.GLASSBOX_HOME = home;
    }
  });
});

describe('glassbox devnet', () => {
  it('on Ctrl-C stops its processes, removes its temporary folder and says so', async () => {
    const home = mkdtempSync(join(tmpdir(), 'glassbox-home-'));
    const child = spawn(process.execPath, [CLI, 'devnet', '--providers', '1', '--json'], {
      env: { ...process.env, GLASSBOX_HOME: home },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    try {
      const [line] = (await once(createInterface({ input: child.stdout }), 'line')) as [string];
      const { dir } = JSON.parse(line) as { dir: string };
      expect(existsSync(dir)).toBe(true);
      expect(existsSync(join(home, 'devnet.json'))).toBe(true);
      child.kill('SIGINT');
      const [code] = (await once(child, 'exit')) as [number | null];
      expect(code).toBe(0);
      expect(stderr).toContain(`stopped; removed ${dir}`);
      expect(existsSync(dir)).toBe(false);
      expect(existsSync(join(home, 'devnet.json'))).toBe(false);
    } finally {
      child.kill('SIGKILL');
      rmSync(home, { recursive: true, force: true });
    }
  }, 60_000);
});
