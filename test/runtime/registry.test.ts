import { ESLint } from 'eslint';
import { afterAll, describe, expect, it } from 'vitest';
import { hashTensors } from '../../src/protocol/encoding.js';
import { isGlassboxError, type GlassboxError } from '../../src/protocol/errors.js';
import { ZERO_HASH } from '../../src/protocol/receipt.js';
import { runtimeHash, type RuntimeProfile } from '../../src/protocol/runtime-profile.js';
import {
  createEngines,
  defaultEngines,
  defaultProfiles,
  type TensorEngine,
  type Engines,
} from '../../src/runtime/index.js';
import { examplePackage, exampleSamples } from '../support/examples.js';

/*
 * The engine registry (src/runtime/registry.ts): engines found by the manifest's format, with the
 * capabilities they declare. A second format is registered from this file alone, the way a new
 * engine folder would be: nothing in src/node or src/sdk changes for it.
 */

/**
 * A format of this test only: "echo" answers its inputs. A real format adds its profile's schema to
 * the union in src/protocol/runtime-profile.ts; this one borrows the type.
 */
function echoEngine(): TensorEngine {
  const profile = { engine: 'echo', engineVersion: '1.0.0' } as unknown as RuntimeProfile;
  const hash = runtimeHash(profile);
  return {
    kind: 'tensors',
    format: 'echo',
    capabilities: { trace: false },
    profile,
    runtimeHash: hash,
    async run(_pkg, inputs) {
      return {
        outputs: inputs,
        inputHash: hashTensors(inputs),
        outputHash: hashTensors(inputs),
        runtime: hash,
        traceRoot: ZERO_HASH,
        durationMs: 0,
      };
    },
    traceStep: () => Promise.reject(new Error('echo does not trace')),
    load: async () => undefined,
    close: async () => undefined,
  };
}

function refusal(f: () => unknown): GlassboxError {
  try {
    f();
  } catch (error) {
    if (isGlassboxError(error)) return error;
    throw error;
  }
  throw new Error('expected a refusal');
}

const opened: Engines[] = [];
const registry = (engines: Engines) => (opened.push(engines), engines);
afterAll(async () => {
  await Promise.all(opened.map((engines) => engines.close()));
});

describe('the engine registry', () => {
  it('finds the ONNX engine by an ONNX package, and it runs and traces it', async () => {
    const engines = registry(defaultEngines());
    const pkg = await examplePackage('iris-int8');
    const engine = engines.for(pkg, { trace: true });
    expect(engine.format).toBe('onnx');
    expect(engine.capabilities.trace).toBe(true);
    expect(engines.list.map((e) => e.format)).toEqual(['onnx', 'llm']);
    // the profiles the registry's engines declare are the ones a deployment admits by default
    expect(defaultProfiles()).toEqual(engines.list.map((e) => e.profile));
    const result = await engine.run(pkg, exampleSamples(pkg, 'iris-int8'), { trace: true });
    expect(result.runtime).toBe(engine.runtimeHash);
    expect(result.traceRoot).not.toBe(ZERO_HASH);
  });

  it('refuses a format no engine runs, naming it and the formats it has', () => {
    const engines = registry(defaultEngines());
    const error = refusal(() => engines.for({ manifest: { format: 'gguf' } }));
    expect(error.code).toBe('MODEL_INVALID');
    expect(error.field).toBe('manifest.format');
    expect(error.shortMessage).toBe('no engine runs format "gguf" here (registered: "onnx", "llm")');
  });

  it('takes a second format registered beside ONNX, and each model goes to its own engine', async () => {
    const echo = echoEngine();
    const engines = registry(createEngines([...defaultEngines().list, echo]));
    expect(engines.list.map((e) => e.format)).toEqual(['onnx', 'llm', 'echo']);
    const pkg = await examplePackage('iris');
    expect(engines.for(pkg).format).toBe('onnx');
    const echoed = engines.for({ manifest: { format: 'echo' } });
    expect(echoed).toBe(echo);
    const inputs = exampleSamples(pkg, 'iris');
    expect((await echoed.run(pkg, inputs)).outputs).toBe(inputs);
  });

  it('refuses a capability an engine does not declare, naming it', () => {
    const engines = registry(createEngines([echoEngine()]));
    const error = refusal(() => engines.for({ manifest: { format: 'echo' } }, { trace: true }));
    expect(error.code).toBe('REQUEST_INVALID');
    expect(error.field).toBe('trace');
    expect(error.shortMessage).toMatch(/format "echo" \(echo\) cannot trace/);
    // not asked for: found
    expect(engines.for({ manifest: { format: 'echo' } }, { trace: false }).format).toBe('echo');
  });

  it('refuses two engines for one format', () => {
    const error = refusal(() => createEngines([echoEngine(), echoEngine()]));
    expect(error.code).toBe('CONFIG_INVALID');
    expect(error.shortMessage).toMatch(/two engines are registered for format "echo"/);
  });
});

describe('nothing outside src/runtime constructs the ONNX engine (eslint.config.js)', () => {
  const probe = [
    "import { createOnnxEngine } from '../runtime/onnx/engine.js';",
    "import ort from 'onnxruntime-node';",
    'export const probe = [createOnnxEngine, ort];',
    '',
  ].join('\n');
  const restricted = async (filePath: string) => {
    const [result] = await new ESLint().lintText(probe, { filePath });
    return result!.messages.filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
  };

  it('refuses the imports in src/node, src/sdk and src/cli, and in tests of other modules', async () => {
    for (const file of ['src/node/probe.ts', 'src/sdk/probe.ts', 'src/cli/commands/probe.ts']) {
      const messages = await restricted(file);
      expect(messages).toHaveLength(2);
      expect(messages[0]).toMatch(/ask the engine registry/);
    }
    expect(await restricted('test/node/probe.ts')).toHaveLength(1); // the engine; onnxruntime is for test oracles
  });

  it('allows them inside src/runtime, where engines are registered', async () => {
    expect(await restricted('src/runtime/probe.ts')).toEqual([]);
  });
});
