import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { formatPrices } from '../../src/cli/io.js';
import { runCli } from '../../src/cli/program.js';
import { encodeTensors } from '../../src/protocol/encoding.js';
import { exampleDir } from '../support/examples.js';

const store = mkdtempSync(join(tmpdir(), 'glassbox-cli-'));
afterAll(() => rmSync(store, { recursive: true, force: true }));

/** Runs the CLI in this process against a temporary store, capturing what it prints. */
async function glassbox(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli([...argv, '--store', store], {
    out: (l) => out.push(l),
    err: (l) => err.push(l),
  });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/** The built CLI (npm run build), as users run it. */
const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

/** A NumPy .npy file (format 1.0) of one C-order array. */
function npy(descr: string, shape: readonly number[], data: ArrayBufferView): Buffer {
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1;
  head.writeUInt16LE(header.length, 8);
  return Buffer.concat([
    head,
    Buffer.from(header, 'latin1'),
    Buffer.from(data.buffer, data.byteOffset, data.byteLength),
  ]);
}

const CID = /^bafkrei[a-z2-7]{52}$/;

describe('glassbox model pack', () => {
  it('prints the model id and manifest, and packing twice gives the same id', async () => {
    const first = await glassbox('model', 'pack', exampleDir('iris'));
    expect(first.code).toBe(0);
    const [id, ...manifest] = first.out.split('\n');
    expect(id).toMatch(CID);
    expect(JSON.parse(manifest.join('\n'))).toMatchObject({
      name: 'iris',
      inputs: [{ name: 'features', shape: ['batch', 4] }],
    });
    const again = await glassbox('model', 'pack', exampleDir('iris'));
    expect(again.out.split('\n')[0]).toBe(id);
  });

  it('packs an LLM folder in the Hugging Face ONNX layout as format llm, with the same command', async () => {
    const packed = await glassbox('model', 'pack', join(exampleDir('iris'), '..', 'tiny-chat'), '--json');
    expect(packed.code, packed.err).toBe(0);
    const { id, manifest } = JSON.parse(packed.out);
    expect(id).toMatch(CID);
    expect(manifest).toMatchObject({
      name: 'tiny-chat',
      format: 'llm',
      entry: 'onnx/model.onnx',
      llm: { tokenizer: 'tokenizer.json', vocabSize: 151936, eosTokenIds: [151645, 151643] },
    });
  });

  it('packs a bare .onnx file with flags, which change the id', async () => {
    const file = join(exampleDir('iris'), 'model.onnx');
    const plain = JSON.parse((await glassbox('model', 'pack', file, '--json')).out);
    // A float model: a tolerance by default, never `exact` (src/protocol/policy.ts, defaultPolicy).
    expect(plain.manifest).toMatchObject({
      name: 'model',
      version: '1',
      policy: { kind: 'tolerance', abs: 1e-5, rel: 1e-4 },
    });
    const named = JSON.parse(
      (
        await glassbox(
          'model',
          'pack',
          file,
          '--name',
          'iris-argmax',
          '--version',
          '2',
          '--policy',
          'argmax:probabilities',
          '--json',
        )
      ).out,
    );
    expect(named.manifest).toMatchObject({
      name: 'iris-argmax',
      version: '2',
      policy: { kind: 'argmax', output: 'probabilities' },
    });
    expect(named.id).not.toBe(plain.id);
  });

  it('refuses a malformed policy with a usage error and a hint', async () => {
    const result = await glassbox('model', 'pack', exampleDir('iris'), '--policy', 'roughly');
    expect(result.code).toBe(1);
    expect(result.err).toMatch(
      /^error: --policy roughly is not exact, tolerance\[:ABS\[:REL\]\] or argmax:OUTPUT \[USAGE\]\nhint: /,
    );
  });
});

describe('glassbox model inspect', () => {
  it('shows the schema, policy and files of a stored model', async () => {
    const id = (await glassbox('model', 'pack', exampleDir('iris-int8'))).out.split('\n')[0]!;
    const result = await glassbox('model', 'inspect', id);
    expect(result.out).toMatch(/input features\s+uint8\[batch,4\]/);
    expect(result.out).toMatch(/output logits\s+int32\[batch,3\] labels setosa, versicolor, virginica/);
    expect(result.out).toMatch(/policy\s+\{"kind":"exact"\}/);
    expect(result.out).toMatch(/file model\.onnx\s+bafkrei\S+ \(\d+ bytes\)/);
  });

  it('describes a file without storing it', async () => {
    const result = JSON.parse((await glassbox('model', 'inspect', exampleDir('cnn'), '--json')).out);
    expect(result.manifest.inputs).toEqual([
      { name: 'image', dtype: 'float32', shape: ['batch', 1, 28, 28] },
    ]);
    expect((await glassbox('model', 'inspect', result.id)).code).toBe(1);
  });
});

describe('glassbox run', () => {
  it('prints the class of a real Iris sample, the outputHash and the runtime hash', async () => {
    const id = (await glassbox('model', 'pack', exampleDir('iris'))).out.split('\n')[0]!;
    // Fisher's first flower, an Iris setosa, and a virginica.
    const result = await glassbox(
      'run',
      id,
      '--input',
      '{"features": [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]]}',
    );
    expect(result.code).toBe(0);
    expect(result.out).toMatch(/^class\s+setosa, virginica$/m);
    expect(result.out).toMatch(/^outputHash\s+0x[0-9a-f]{64}$/m);
    expect(result.out).toMatch(
      /^runtime\s+0x[0-9a-f]{64} \(onnxruntime-node 1\.30\.0, cpu, optimisation basic, /m,
    );
  });

  it('runs a file directly, reads inputs from a file, and gives the same hashes every time', async () => {
    const samples = join(exampleDir('iris-int8'), 'samples.json');
    const runs = await Promise.all(
      [1, 2, 3].map(() => glassbox('run', exampleDir('iris-int8'), '--input', samples, '--trace', '--json')),
    );
    const parsed = runs.map((r) => JSON.parse(r.out));
    expect(new Set(parsed.map((p) => p.outputHash)).size).toBe(1);
    expect(parsed[0].traceRoot).toMatch(/^0x[0-9a-f]{64}$/);
    expect(parsed[0].outputs.label).toEqual({ dtype: 'int64', shape: [3], data: ['0', '1', '2'] });
  });

  it('reads inputs from the canonical encoding (.bin) and NumPy (.npy) as from JSON; a large output prints short', async () => {
    const dir = exampleDir('iris');
    const rows = [5.1, 3.5, 1.4, 0.2, 6.3, 3.3, 6.0, 2.5];
    const features = new Float32Array(rows);
    const bin = join(store, 'features.bin');
    writeFileSync(bin, encodeTensors({ features: { dtype: 'float32', shape: [2, 4], data: features } }));
    const npyFile = join(store, 'features.npy');
    writeFileSync(npyFile, npy('<f4', [2, 4], features));
    const hashes = await Promise.all(
      [
        `{"features": [${JSON.stringify(rows.slice(0, 4))}, ${JSON.stringify(rows.slice(4))}]}`,
        bin,
        npyFile,
      ].map(
        async (input) => JSON.parse((await glassbox('run', dir, '--input', input, '--json')).out).outputHash,
      ),
    );
    expect(hashes[0]).toMatch(/^0x[0-9a-f]{64}$/);
    expect(new Set(hashes).size).toBe(1);

    const fortran = join(store, 'fortran.npy');
    writeFileSync(
      fortran,
      npy('<f4', [2, 4], features).toString('latin1').replace('False', 'True '),
      'latin1',
    );
    expect((await glassbox('run', dir, '--input', fortran)).err).toMatch(
      /fortran\.npy is not an \.npy array Glassbox reads: Fortran order \(save a C-order array\) \[USAGE\]/,
    );
    const big = join(store, 'big.npy');
    writeFileSync(big, npy('>f4', [2, 4], features));
    expect((await glassbox('run', dir, '--input', big)).err).toMatch(
      /element type >f4 \(supported: <f4 float32/,
    );

    // 500 images in: 5000 probabilities out, printed as a summary, not 5000 numbers
    const images = join(store, 'images.npy');
    writeFileSync(images, npy('<f4', [500, 1, 28, 28], new Float32Array(500 * 784).fill(0.5)));
    const json = JSON.parse((await glassbox('run', exampleDir('cnn'), '--input', images, '--json')).out);
    expect(json.outputs.probabilities).toMatchObject({
      dtype: 'float32',
      shape: [500, 10],
      values: 5000,
      truncated: true,
    });
    expect(json.outputs.probabilities.first).toHaveLength(12);
    const human = await glassbox('run', exampleDir('cnn'), '--input', images);
    expect(human.out).toMatch(/^probabilities\s+float32\[500,10\] \[[^\]]*\] … \(5000 values\)$/m);
  });

  it('names the offending field of a bad input, hints, and exits non-zero', async () => {
    const dir = exampleDir('iris');
    const wrongDim = await glassbox('run', dir, '--input', '{"features": [[5.1, 3.5, 1.4]]}');
    expect(wrongDim.code).toBe(1);
    expect(wrongDim.err).toMatch(
      /^error: inputs\.features\.shape\[1\] is 3, but the model takes 4 \[INPUT_DIM\]\nhint: /,
    );
    const notNumber = await glassbox('run', dir, '--input', '{"features": [[5.1, "x", 1.4, 0.2]]}');
    expect(notNumber.err).toMatch(/inputs\.features\.data\[1\] is "x": not a number \[INPUT_VALUE\]/);
    const badJson = await glassbox('run', dir, '--input', '{"features": ');
    expect(badJson.err).toMatch(/--input value is not valid JSON.*\[USAGE\]/);
    const missing = await glassbox(
      'run',
      'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku',
      '--input',
      '{}',
    );
    expect(missing.err).toMatch(/is not in the store \[MODEL_NOT_FOUND\]\nhint: pack the model first/);
  });
});

describe('what a new user meets at the edges', () => {
  it('a missing file is the path, not "a bug in glassbox"', async () => {
    const missing = join(store, 'no-such-answer.json');
    const err: string[] = [];
    const code = await runCli(['verify', missing, '--rpc-url', 'http://127.0.0.1:1'], {
      out: () => undefined,
      err: (l) => err.push(l),
    });
    expect(code).toBe(1);
    expect(err.join('\n')).toMatch(
      new RegExp(`^error: the file ${missing} is not a readable file \\[USAGE\\]$`, 'm'),
    );
    expect(err.join('\n')).not.toMatch(/a bug in glassbox/);
  });

  it('names --input-price when it is not an amount, before it calls the node', async () => {
    const err: string[] = [];
    const code = await runCli(
      [
        'node',
        'offer',
        'bafkreiabc',
        '--url',
        'http://127.0.0.1:1',
        '--token',
        'x'.repeat(64),
        '--input-price',
        '0.5',
      ],
      { out: () => undefined, err: (l) => err.push(l) },
    );
    expect(code).toBe(1);
    expect(err.join('\n')).toMatch(
      /^error: --input-price 0\.5 is not a decimal amount of base units \[USAGE\]$/m,
    );
  });

  it('shows one price per inference, or an LLM offer per output and input token', () => {
    expect(formatPrices({ price: 10n ** 15n, inputPrice: 0n })).toBe(
      '0.001 tokens (1000000000000000 base units)',
    );
    expect(formatPrices({ price: 40n, inputPrice: 10n }, String)).toBe(
      '40 per output token, 10 per input token',
    );
  });

  it('ends quietly when its reader stops early (| head), with no EPIPE stack trace', async () => {
    // The built CLI in its own process, its stdout a pipe whose reader is gone before it writes.
    const child = spawn(process.execPath, [CLI, 'model', 'inspect', exampleDir('cnn'), '--json'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout.destroy();
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(stderr).toBe('');
    expect(code).toBe(0);
  });
});
