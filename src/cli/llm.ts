import type { Command } from 'commander';
import {
  completeLlmRequest,
  llmInputHash,
  llmOutputHash,
  llmParamsHash,
  parseLlmRequest,
  type LlmRequest,
} from '../protocol/llm.js';
import type { ModelPackage } from '../protocol/manifest.js';
import type { GraphOptimizationLevel } from '../protocol/runtime-profile.js';
import type { ChatMessage, FinishReason, TokenEngine } from '../runtime/engine.js';
import { defaultEngines, type Engines } from '../runtime/index.js';
import { parsePositiveInt } from './args.js';
import { printFields, toJson, usageError, type Io } from './io.js';

/*
 * Local generation for `glassbox run <llm> --prompt` and `glassbox chat`: the request goes through
 * the same normalization a provider applies (src/protocol/llm.ts), so the hashes printed are the
 * ones a provider's receipt for the same request and seed would carry.
 */

export type SamplingFlags = {
  temperature?: string;
  topP?: string;
  topK?: string;
  seed?: string;
  maxTokens?: string;
  stop?: string[];
  system?: string;
};

export type RuntimeFlags = { threads?: string; optimization?: GraphOptimizationLevel; timeout?: string };

/** The sampling and runtime flags of the LLM commands. */
export function samplingOptions(command: Command): Command {
  return command
    .option('--temperature <t>', 'sampling temperature in [0, 2]; 0 is greedy (default 1)')
    .option(
      '--top-p <p>',
      'nucleus sampling: keep the smallest set of tokens with this probability (default 1)',
    )
    .option('--top-k <k>', 'keep only the k most likely tokens; 0 keeps all (default 0)')
    .option('--seed <n>', 'uint64 sampling seed (default: a random one, printed)')
    .option('--max-tokens <n>', 'the most output tokens (default: what the context leaves)')
    .option('--stop <text...>', 'up to 4 strings that end the output')
    .option('--system <text>', 'a system message before the prompt (chat models)');
}

/** The engines of this build with the runtime flags (`runtimeOptions`) applied to both formats. */
export function enginesFor(flags: RuntimeFlags): Engines {
  const options = {
    ...(flags.optimization === undefined ? {} : { graphOptimizationLevel: flags.optimization }),
    ...(flags.threads === undefined
      ? {}
      : { intraOpNumThreads: parsePositiveInt(flags.threads, '--threads') }),
    ...(flags.timeout === undefined
      ? {}
      : { limits: { timeoutMs: parsePositiveInt(flags.timeout, '--timeout') } }),
  };
  return defaultEngines({ onnx: options, llm: options });
}

function parseNumber(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw usageError(`${flag} ${value} is not a number`);
  return n;
}

/** The OpenAI fields of the sampling flags: what a client sends beside the model and the prompt. */
export function samplingFields(flags: SamplingFlags) {
  const seed = flags.seed;
  if (seed !== undefined && !/^\d{1,20}$/.test(seed)) throw usageError(`--seed ${seed} is not a uint64`);
  return {
    temperature: parseNumber(flags.temperature, '--temperature'),
    top_p: parseNumber(flags.topP, '--top-p'),
    top_k: parseNumber(flags.topK, '--top-k'),
    seed,
    max_tokens: parseNumber(flags.maxTokens, '--max-tokens'),
    stop: flags.stop,
  };
}

/** The wire body a client would send for these messages and flags (OpenAI's names). */
function body(pkg: ModelPackage, messages: readonly ChatMessage[] | string, flags: SamplingFlags): unknown {
  return {
    model: pkg.id,
    ...(typeof messages === 'string' ? { kind: 'completion', prompt: messages } : { kind: 'chat', messages }),
    ...samplingFields(flags),
  };
}

export type LocalGeneration = {
  readonly request: LlmRequest;
  readonly promptIds: readonly number[];
  readonly outputIds: readonly number[];
  readonly text: string;
  readonly finishReason: FinishReason;
  readonly durationMs: number;
};

/**
 * Templates, tokenizes and generates once, writing text deltas to `onText` as they come. A chat
 * model gets `messages`; a string is a raw completion prompt.
 */
export async function generateLocally(
  engine: TokenEngine,
  pkg: ModelPackage,
  messages: readonly ChatMessage[] | string,
  flags: SamplingFlags,
  onText: (text: string) => void,
): Promise<LocalGeneration> {
  if (pkg.manifest.format !== 'llm') throw usageError(`model ${pkg.id} is not an LLM`);
  const draft = parseLlmRequest(body(pkg, messages, flags));
  const prompt = await engine.prompt(
    pkg,
    draft.kind === 'chat'
      ? { kind: 'chat', messages: draft.messages }
      : { kind: 'completion', prompt: draft.prompt },
  );
  const request = completeLlmRequest(draft, {
    promptTokens: prompt.ids.length,
    contextLength: pkg.manifest.llm.contextLength,
  });
  for await (const event of engine.generate(pkg, prompt.ids, { params: request.params })) {
    if (event.type === 'token') {
      if (event.text) onText(event.text);
    } else
      return {
        request,
        promptIds: prompt.ids,
        outputIds: event.outputIds,
        text: event.text,
        finishReason: event.finishReason,
        durationMs: event.durationMs,
      };
  }
  throw new Error('the generation ended without its done event');
}

/** The hashes and counts a receipt for this generation would carry, for people or as JSON. */
export function printGeneration(io: Io, json: boolean, engine: TokenEngine, g: LocalGeneration): void {
  const summary = {
    finishReason: g.finishReason,
    promptTokens: g.promptIds.length,
    completionTokens: g.outputIds.length,
    seed: g.request.params.seed.toString(),
    inputHash: llmInputHash(g.request, g.promptIds),
    outputHash: llmOutputHash(g.outputIds),
    paramsHash: llmParamsHash(g.request.params),
    runtime: engine.runtimeHash,
    durationMs: g.durationMs,
    tokensPerSecond: g.outputIds.length / (g.durationMs / 1000),
  };
  if (json) {
    io.out(
      toJson({
        model: g.request.model,
        text: g.text,
        ...summary,
        outputIds: g.outputIds,
        profile: engine.profile,
      }),
    );
    return;
  }
  printFields(io, [
    ['finish', summary.finishReason],
    ['tokens', `${summary.promptTokens} prompt, ${summary.completionTokens} output`],
    ['seed', summary.seed],
    ['inputHash', summary.inputHash],
    ['outputHash', summary.outputHash],
    ['paramsHash', summary.paramsHash],
    ['runtime', `${summary.runtime} (${engine.profile.engine} ${engine.profile.engineVersion})`],
    ['time', `${summary.durationMs.toFixed(1)} ms, ${summary.tokensPerSecond.toFixed(0)} tokens/s`],
  ]);
}
