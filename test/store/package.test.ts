import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_OUT_DIR } from '../../examples/models/build.mjs';
import {
  canonicalJson,
  DEFAULT_TOLERANCE,
  fileCid,
  isGlassboxError,
  manifestBytes,
  modelDigest,
  modelIdFromDigest,
  modelIdOf,
  rawCid,
  type GlassboxError,
  type ModelId,
} from '../../src/protocol/index.js';
import {
  buildManifest,
  createFsStore,
  createMemoryStore,
  loadModel,
  packModel,
  packModelFile,
  readManifest,
  readOnnxSchema,
  type PackModelParameters,
} from '../../src/store/index.js';
import { ELEM, onnxModel, tinyClassifier } from './onnx-fixture.js';
import { tempDir } from './temp-dir.js';

async function caught(promise: Promise<unknown>): Promise<GlassboxError> {
  try {
    await promise;
  } catch (error) {
    if (isGlassboxError(error)) return error;
    throw error;
  }
  throw new Error('expected a GlassboxError, but nothing was thrown');
}

const EXAMPLES = ['iris', 'iris-int8', 'cnn'] as const;

/** An example model (built by vitest's globalSetup) as packModel's parameters, from its model.json. */
async function example(name: (typeof EXAMPLES)[number]): Promise<PackModelParameters> {
  const dir = join(DEFAULT_OUT_DIR, name);
  const options = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as Omit<
    PackModelParameters,
    'entry'
  >;
  return { ...options, entry: { path: 'model.onnx', bytes: await readFile(join(dir, 'model.onnx')) } };
}

const tiny = (overrides: Partial<PackModelParameters> = {}): PackModelParameters => ({
  entry: { path: 'model.onnx', bytes: tinyClassifier() },
  name: 'tiny',
  version: '1',
  policy: { kind: 'exact' },
  ...overrides,
});

describe('packing a model', () => {
  it.each(EXAMPLES)('gives %s the same id every time, in any store', async (name) => {
    const params = await example(name);
    const store = createFsStore(await tempDir());
    const first = await packModel(store, params);
    const again = await packModel(store, params);
    const elsewhere = await packModel(createFsStore(await tempDir()), await example(name));
    expect(again.id).toBe(first.id);
    expect(elsewhere.id).toBe(first.id);
    expect(elsewhere.manifest).toEqual(first.manifest);
  });

  it('names it by the raw CID of its manifest’s canonical JSON, stored as a blob', async () => {
    const store = createFsStore(await tempDir());
    const { id, manifest } = await packModel(store, await example('iris'));
    const stored = await store.get(id);
    expect(new TextDecoder().decode(stored)).toBe(canonicalJson(manifest));
    expect(Buffer.compare(stored, manifestBytes(manifest))).toBe(0);
    expect(id).toBe(rawCid(stored).toString());
    expect(id).toBe(await fileCid(stored));
    expect(id).toBe(modelIdOf(manifest));
    expect(id.startsWith('bafkrei')).toBe(true);
    expect(modelDigest(id)).toMatch(/^0x[0-9a-f]{64}$/);
    expect(modelIdFromDigest(modelDigest(id))).toBe(id);
  });

  it('describes the model: its files by CID, the schema of its graph, labels on their outputs', async () => {
    const params = await example('iris');
    const { manifest } = await packModel(createFsStore(await tempDir()), params);
    const { inputs, outputs } = readOnnxSchema(params.entry.bytes);
    expect(manifest).toEqual({
      schema: 'glassbox.model/v1',
      name: 'iris',
      version: params.version,
      format: 'onnx',
      entry: 'model.onnx',
      files: [
        { path: 'model.onnx', cid: await fileCid(params.entry.bytes), size: params.entry.bytes.length },
      ],
      inputs,
      outputs: outputs.map((o) => ({ ...o, labels: ['setosa', 'versicolor', 'virginica'] })),
      policy: params.policy,
      description: params.description,
      license: params.license,
    });
  });

  it('gives a different id when anything in the manifest differs', async () => {
    const store = createFsStore(await tempDir());
    const base = (await packModel(store, tiny())).id;
    const variants: Partial<PackModelParameters>[] = [
      { version: '2' },
      { name: 'other' },
      { policy: { kind: 'argmax', output: 'scores' } },
      { description: 'x' },
      { license: 'MIT' },
      { labels: { scores: ['a', 'b', 'c'] } },
      { previous: base },
      { entry: { path: 'model.onnx', bytes: tinyClassifier('changed doc string') } },
      { entry: { path: 'tiny.onnx', bytes: tinyClassifier() } },
      { extraFiles: [{ path: 'vocab.txt', bytes: new Uint8Array([1]) }] },
    ];
    const ids = new Set([base]);
    for (const variant of variants) ids.add((await packModel(store, tiny(variant))).id);
    expect(ids.size).toBe(variants.length + 1);
  });

  it('stores extra files, listed by path whatever order they are given in', async () => {
    const store = createFsStore(await tempDir());
    const a = { path: 'b/weights.bin', bytes: new Uint8Array([1, 2, 3]) };
    const b = { path: 'a.txt', bytes: new TextEncoder().encode('vocab') };
    const one = await packModel(store, tiny({ extraFiles: [a, b] }));
    const two = await packModel(store, tiny({ extraFiles: [b, a] }));
    expect(two.id).toBe(one.id);
    expect(one.manifest.files.map((f) => f.path)).toEqual(['a.txt', 'b/weights.bin', 'model.onnx']);
    const loaded = await loadModel(store, one.id);
    expect([...loaded.files.keys()].sort()).toEqual(['a.txt', 'b/weights.bin', 'model.onnx']);
    expect([...loaded.files.get('b/weights.bin')!]).toEqual([1, 2, 3]);
  });

  it('refuses a corrupted ONNX entry with MODEL_INVALID, storing nothing', async () => {
    const store = createFsStore(await tempDir());
    const bytes = tinyClassifier();
    const error = await caught(
      packModel(store, tiny({ entry: { path: 'model.onnx', bytes: bytes.subarray(0, 40) } })),
    );
    expect(error.code).toBe('MODEL_INVALID');
    expect(error.shortMessage).toMatch(/^not an ONNX model/);
    const listed: string[] = [];
    for await (const cid of store.list()) listed.push(cid);
    expect(listed).toEqual([]);
  });

  it('refuses bad parameters, naming the field', async () => {
    const cases: [Partial<PackModelParameters>, string, string][] = [
      [{ labels: { nope: ['a'] } }, 'MANIFEST_INVALID', 'labels.nope'],
      [{ labels: { scores: ['a', 'b'] } }, 'MANIFEST_INVALID', 'labels.scores'],
      [{ policy: { kind: 'argmax', output: 'nope' } }, 'MANIFEST_INVALID', 'manifest.policy.output'],
      [{ name: '' }, 'MANIFEST_INVALID', 'manifest.name'],
      [
        { entry: { path: '../model.onnx', bytes: tinyClassifier() } },
        'MANIFEST_INVALID',
        'manifest.files.0.path',
      ],
      [
        { extraFiles: [{ path: 'model.onnx', bytes: new Uint8Array() }] },
        'MANIFEST_INVALID',
        'manifest.files.1.path',
      ],
      [{ previous: 'not-a-model-id' }, 'CID_INVALID', 'previous'],
    ];
    const store = createFsStore(await tempDir());
    for (const [overrides, code, field] of cases) {
      const error = await caught(packModel(store, tiny(overrides)));
      expect({ code: error.code, field: error.field }).toEqual({ code, field });
    }
  });

  it('builds the same manifest without storing anything', async () => {
    const store = createFsStore(await tempDir());
    const params = await example('cnn');
    expect(await buildManifest(params)).toEqual((await packModel(store, params)).manifest);
  });
});

describe('packing a model file', () => {
  it('defaults the name to the file name, the version to 1 and, for float outputs, the policy to a tolerance', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'classifier.onnx'), tinyClassifier());
    const store = createFsStore(join(dir, 'store'));
    const { id, manifest } = await packModelFile(store, join(dir, 'classifier.onnx'));
    expect(manifest).toMatchObject({
      name: 'classifier',
      version: '1',
      policy: DEFAULT_TOLERANCE,
      entry: 'classifier.onnx',
      description: '',
      license: '',
    });
    expect((await packModelFile(store, join(dir, 'classifier.onnx'), { version: '1' })).id).toBe(id);
  });

  it('defaults the policy to exact when no output is a float tensor', async () => {
    const dir = await tempDir();
    const bytes = onnxModel({
      inputs: [{ name: 'x', elemType: ELEM.INT8, dims: ['batch', 4] }],
      outputs: [{ name: 'logits', elemType: ELEM.INT32, dims: ['batch', 3] }],
    });
    await writeFile(join(dir, 'quantized.onnx'), bytes);
    const { manifest } = await packModelFile(createMemoryStore(), join(dir, 'quantized.onnx'));
    expect(manifest.policy).toEqual({ kind: 'exact' });
  });

  it('packs an example model from disk to the same id as from bytes', async () => {
    const params = await example('iris-int8');
    const { entry: _entry, extraFiles: _extra, ...options } = params;
    const store = createFsStore(await tempDir());
    const fromFile = await packModelFile(store, join(DEFAULT_OUT_DIR, 'iris-int8', 'model.onnx'), options);
    expect(fromFile.id).toBe((await packModel(store, params)).id);
  });

  it('stores extra files at their paths relative to the model, and only from its folder', async () => {
    const dir = await tempDir();
    await mkdir(join(dir, 'model', 'data'), { recursive: true });
    await writeFile(join(dir, 'model', 'm.onnx'), tinyClassifier());
    await writeFile(join(dir, 'model', 'data', 'weights.bin'), new Uint8Array([9]));
    await writeFile(join(dir, 'outside.bin'), new Uint8Array([8]));
    const store = createFsStore(join(dir, 'store'));
    const { manifest } = await packModelFile(store, join(dir, 'model', 'm.onnx'), {
      extraFiles: [join(dir, 'model', 'data', 'weights.bin')],
    });
    expect(manifest.files.map((f) => f.path)).toEqual(['data/weights.bin', 'm.onnx']);
    const error = await caught(
      packModelFile(store, join(dir, 'model', 'm.onnx'), { extraFiles: [join(dir, 'outside.bin')] }),
    );
    expect(error.code).toBe('MANIFEST_INVALID');
  });

  it('answers MODEL_NOT_FOUND for a file that does not exist', async () => {
    const dir = await tempDir();
    const error = await caught(packModelFile(createFsStore(dir), join(dir, 'missing.onnx')));
    expect(error.code).toBe('MODEL_NOT_FOUND');
    expect(error.message).toContain('missing.onnx');
  });
});

describe('loading a model', () => {
  it('gives back every file, checked', async () => {
    const store = createFsStore(await tempDir());
    const params = await example('cnn');
    const { id, manifest } = await packModel(store, params);
    const pkg = await loadModel(store, id);
    expect(pkg.id).toBe(id);
    expect(pkg.manifest).toEqual(manifest);
    expect(await readManifest(store, id)).toEqual(manifest);
    expect(Buffer.compare(pkg.files.get('model.onnx')!, params.entry.bytes)).toBe(0);
  });

  it('refuses a package whose file was corrupted, naming the file', async () => {
    const store = createFsStore(await tempDir());
    const params = await example('iris');
    const { id, manifest } = await packModel(store, params);
    const cid = manifest.files[0]!.cid;
    const flipped = params.entry.bytes.slice();
    flipped[flipped.length >> 1]! ^= 1;
    await writeFile(store.pathOf(cid), flipped);
    const error = await caught(loadModel(store, id));
    expect(error.code).toBe('BLOB_CORRUPT');
    expect(error.shortMessage).toBe(
      `model ${id}: file "model.onnx" (${cid}): blob ${cid} is corrupt: its ${flipped.length} bytes hash to ${await fileCid(flipped)}`,
    );
    expect(error.details).toMatchObject({ model: id, path: 'model.onnx', cid });
  });

  it('refuses a package whose file is missing, naming the file', async () => {
    const store = createFsStore(await tempDir());
    const { id, manifest } = await packModel(
      store,
      tiny({ extraFiles: [{ path: 'extra.bin', bytes: new Uint8Array([7]) }] }),
    );
    const extra = manifest.files.find((f) => f.path === 'extra.bin')!;
    await store.delete(extra.cid);
    const error = await caught(loadModel(store, id));
    expect(error.code).toBe('BLOB_NOT_FOUND');
    expect(error.shortMessage).toContain(`file "extra.bin" (${extra.cid})`);
  });

  it('refuses a manifest whose blob was changed', async () => {
    const store = createFsStore(await tempDir());
    const { id, manifest } = await packModel(store, tiny());
    await writeFile(store.pathOf(id), manifestBytes({ ...manifest, license: 'stolen' }));
    const error = await caught(loadModel(store, id));
    expect(error.code).toBe('BLOB_CORRUPT');
    expect(error.message).toContain(id);
  });

  it('refuses a manifest whose file sizes disagree with the files', async () => {
    const store = createFsStore(await tempDir());
    const { manifest } = await packModel(store, tiny());
    const lying = { ...manifest, files: [{ ...manifest.files[0]!, size: manifest.files[0]!.size + 1 }] };
    const id = (await store.put(manifestBytes(lying))) as ModelId;
    const error = await caught(loadModel(store, id));
    expect(error.code).toBe('MANIFEST_INVALID');
    expect(error.field).toBe('manifest.files.0.size');
    expect(error.shortMessage).toContain('file "model.onnx"');
  });

  it('answers MODEL_NOT_FOUND for an id not in the store, CID_INVALID for what is not a model id', async () => {
    const store = createFsStore(await tempDir());
    const absent = modelIdOf(await buildManifest(tiny()));
    expect((await caught(loadModel(store, absent))).code).toBe('MODEL_NOT_FOUND');
    expect((await caught(readManifest(store, absent))).code).toBe('MODEL_NOT_FOUND');
    const fileId = await store.put(new Uint8Array(2 * 1024 * 1024)); // a dag-pb CID: a file, not a manifest
    for (const notAnId of ['', 'model.onnx', fileId])
      expect((await caught(loadModel(store, notAnId))).code).toBe('CID_INVALID');
  });

  it('refuses a blob that is not a manifest', async () => {
    const store = createFsStore(await tempDir());
    const id = await store.put(tinyClassifier());
    expect((await caught(loadModel(store, id))).code).toBe('MANIFEST_INVALID');
  });
});
