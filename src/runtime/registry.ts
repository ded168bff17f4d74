import { GlassboxError } from '../protocol/errors.js';
import type { AnyEngine, EngineCapabilities, TensorEngine, TokenEngine } from './engine.js';

/*
 * The engine registry: how the node, the SDK's local mode, verifiers and committee members find the
 * engine that runs a model, by its manifest's `format`, without knowing which engines exist. The
 * engines this build registers are listed once, in src/runtime/engines.ts.
 */

/** Capabilities a caller needs of the engine it asks for (src/runtime/engine.ts). */
export type EngineNeeds = { readonly [K in keyof EngineCapabilities]?: boolean };

/** What the registry needs of a model to find its engine: a package or anything with its manifest. */
export type ModelOfFormat = { readonly manifest: { readonly format: string } };

export type Engines = {
  /**
   * The engine that runs `model`'s format and has every capability in `needs`. Refused with
   * MODEL_INVALID naming `manifest.format` when no engine runs the format, and with REQUEST_INVALID
   * naming the capability when its engine lacks one.
   */
  for(model: ModelOfFormat, needs?: EngineNeeds): TensorEngine;
  /**
   * The token engine (src/runtime/engine.ts, TokenEngine) that generates for `model`: an LLM. A
   * format with no engine is MODEL_INVALID naming `manifest.format`; a model that is not an LLM is
   * REQUEST_INVALID naming `model` (it is run on /v1/infer).
   */
  tokens(model: ModelOfFormat): TokenEngine;
  /** Every registered engine, in registration order. */
  readonly list: readonly AnyEngine[];
  /** Closes every engine. */
  close(): Promise<void>;
};

export function createEngines(engines: readonly AnyEngine[]): Engines {
  const byFormat = new Map<string, AnyEngine>();
  for (const engine of engines) {
    if (byFormat.has(engine.format))
      throw new GlassboxError('CONFIG_INVALID', `two engines are registered for format "${engine.format}"`, {
        field: 'engines',
      });
    byFormat.set(engine.format, engine);
  }
  const formats = () => [...byFormat.keys()].map((f) => `"${f}"`).join(', ') || 'none';
  const find = (format: string): AnyEngine => {
    const engine = byFormat.get(format);
    if (!engine)
      throw new GlassboxError(
        'MODEL_INVALID',
        `no engine runs format "${format}" here (registered: ${formats()})`,
        {
          field: 'manifest.format',
          details: { format, registered: [...byFormat.keys()] },
        },
      );
    return engine;
  };
  return {
    for(model, needs = {}) {
      const { format } = model.manifest;
      const engine = find(format);
      if (engine.kind !== 'tensors')
        throw new GlassboxError(
          'REQUEST_INVALID',
          `a model of format "${format}" generates tokens: ask it on /v1/chat/completions or /v1/completions, not /v1/infer`,
          { field: 'model', details: { format } },
        );
      for (const capability of Object.keys(needs) as (keyof EngineCapabilities)[])
        if (needs[capability] && !engine.capabilities[capability])
          throw new GlassboxError(
            'REQUEST_INVALID',
            `the engine for format "${format}" (${engine.profile.engine}) cannot ${capability}`,
            { field: capability, details: { format, capability } },
          );
      return engine;
    },
    tokens(model) {
      const { format } = model.manifest;
      const engine = find(format);
      if (engine.kind !== 'tokens')
        throw new GlassboxError(
          'REQUEST_INVALID',
          `a model of format "${format}" does not generate tokens: run it on /v1/infer`,
          { field: 'model', details: { format } },
        );
      return engine;
    },
    list: [...byFormat.values()],
    async close() {
      await Promise.all(engines.map((engine) => engine.close()));
    },
  };
}
