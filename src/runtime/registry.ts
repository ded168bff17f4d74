import { GlassboxError } from '../protocol/errors.js';
import type { Engine, EngineCapabilities } from './engine.js';

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
  for(model: ModelOfFormat, needs?: EngineNeeds): Engine;
  /** Every registered engine, in registration order. */
  readonly list: readonly Engine[];
  /** Closes every engine. */
  close(): Promise<void>;
};

export function createEngines(engines: readonly Engine[]): Engines {
  const byFormat = new Map<string, Engine>();
  for (const engine of engines) {
    if (byFormat.has(engine.format))
      throw new GlassboxError('CONFIG_INVALID', `two engines are registered for format "${engine.format}"`, {
        field: 'engines',
      });
    byFormat.set(engine.format, engine);
  }
  const formats = () => [...byFormat.keys()].map((f) => `"${f}"`).join(', ') || 'none';
  return {
    for(model, needs = {}) {
      const { format } = model.manifest;
      const engine = byFormat.get(format);
      if (!engine)
        throw new GlassboxError(
          'MODEL_INVALID',
          `no engine runs format "${format}" here (registered: ${formats()})`,
          { field: 'manifest.format', details: { format, registered: [...byFormat.keys()] } },
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
    list: [...byFormat.values()],
    async close() {
      await Promise.all(engines.map((engine) => engine.close()));
    },
  };
}
