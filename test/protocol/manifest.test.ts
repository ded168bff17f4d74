import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fileCid } from '../../src/protocol/cid.js';
import {
  manifestBytes,
  manifestFromBytes,
  modelDigest,
  modelIdFromDigest,
  modelIdOf,
  parseManifest,
  type ModelManifest,
} from '../../src/protocol/manifest.js';
import { runtimeHash, type RuntimeProfile } from '../../src/protocol/runtime-profile.js';

const manifest: ModelManifest = {
  schema: 'glassbox.model/v1',
  name: 'tiny',
  version: '1',
  format: 'onnx',
  entry: 'model.onnx',
  files: [
    { path: 'model.onnx', cid: 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku', size: 0 },
  ],
  inputs: [{ name: 'x', dtype: 'float32', shape: ['batch', 4] }],
  outputs: [{ name: 'y', dtype: 'float32', shape: ['batch', 3], labels: ['a', 'b', 'c'] }],
  policy: { kind: 'argmax', output: 'y' },
  description: 'test',
  license: 'MIT',
};

describe('model manifests', () => {
  it('have an id that is the IPFS CID of their canonical JSON, whatever the key order', async () => {
    const reordered = Object.fromEntries(Object.entries(manifest).reverse()) as ModelManifest;
    expect(modelIdOf(reordered)).toBe(modelIdOf(manifest));
    expect(modelIdOf(manifest)).toBe(await fileCid(manifestBytes(manifest)));
    expect(modelIdOf({ ...manifest, version: '2' })).not.toBe(modelIdOf(manifest));
  });

  it('map to a 32-byte on-chain digest and back', () => {
    const id = modelIdOf(manifest);
    expect(modelDigest(id)).toMatch(/^0x[0-9a-f]{64}$/);
    expect(modelIdFromDigest(modelDigest(id))).toBe(id);
    expect(() => modelDigest('not-a-cid')).toThrow(expect.objectContaining({ code: 'CID_INVALID' }));
  });

  it('are refused when fetched bytes do not hash to the id asked for', () => {
    const id = modelIdOf(manifest);
    expect(manifestFromBytes(manifestBytes(manifest), id)).toEqual(manifest);
    const other = manifestBytes({ ...manifest, description: 'tampered' });
    expect(() => manifestFromBytes(other, id)).toThrow(expect.objectContaining({ code: 'BLOB_CORRUPT' }));
  });

  it('name the offending field when invalid', () => {
    const cases: [unknown, string][] = [
      [{ ...manifest, inputs: [{ name: 'x', dtype: 'float16', shape: [1] }] }, 'manifest.inputs.0.dtype'],
      [{ ...manifest, entry: 'other.onnx' }, 'manifest.entry'],
      [{ ...manifest, policy: { kind: 'argmax', output: 'z' } }, 'manifest.policy.output'],
      [{ ...manifest, files: [{ ...manifest.files[0], path: '../etc/passwd' }] }, 'manifest.files.0.path'],
      [{ ...manifest, extra: 1 }, 'manifest.extra'],
    ];
    for (const [json, field] of cases)
      expect(() => parseManifest(json)).toThrow(expect.objectContaining({ code: 'MANIFEST_INVALID', field }));
  });
});

describe('runtime profiles', () => {
  const profile: RuntimeProfile = {
    engine: 'onnxruntime-node',
    engineVersion: '1.30.0',
    executionProvider: 'cpu',
    graphOptimizationLevel: 'all',
    arch: 'x64',
    options: {},
  };

  it('hash every field, independently of key order', () => {
    expect(runtimeHash(Object.fromEntries(Object.entries(profile).reverse()) as RuntimeProfile)).toBe(
      runtimeHash(profile),
    );
    fc.assert(
      fc.property(
        fc.constantFrom('disabled', 'basic', 'extended') as fc.Arbitrary<
          RuntimeProfile['graphOptimizationLevel']
        >,
        (level) => {
          expect(runtimeHash({ ...profile, graphOptimizationLevel: level })).not.toBe(runtimeHash(profile));
        },
      ),
    );
    expect(runtimeHash({ ...profile, options: { 'session.set_denormal_as_zero': '1' } })).not.toBe(
      runtimeHash(profile),
    );
  });
});
