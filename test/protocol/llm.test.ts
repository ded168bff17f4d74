import { readFileSync } from 'node:fs';
import { bytesToHex, keccak256, stringToBytes } from 'viem';
import { describe, expect, it } from 'vitest';
import { encodeTensors } from '../../src/protocol/encoding.js';
import { isGlassboxError } from '../../src/protocol/errors.js';
import {
  canonicalLlmRequest,
  completeLlmRequest,
  decodeLlmInput,
  decodeLlmOutput,
  llmInputData,
  llmInputHash,
  llmOutputData,
  llmOutputHash,
  llmParamsHash,
  llmTokenCounts,
  parseCanonicalLlmRequest,
  parseLlmRequest,
  tokenPrice,
  type LlmRequest,
} from '../../src/protocol/llm.js';
import { explainSample, gumbelNoise, philox4x32, tokenMargin } from '../../src/protocol/sampling.js';
import { SESSION_TYPES } from '../../src/protocol/session.js';

const model = 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku';
const body = {
  kind: 'chat',
  model,
  messages: [{ role: 'user', content: 'Hi' }],
  temperature: 0.7,
  top_k: 3,
  seed: 42,
  max_tokens: 16,
  stop: '\n\n',
  stream: true, // the route's business, not the output's: not in the request
};
// Qwen3's ChatML ids of "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n".
const promptIds = [151644, 872, 198, 13048, 151645, 198, 151644, 77091, 198];
const outputIds = [9707, 0, 151645];
const request = completeLlmRequest(parseLlmRequest(body), { promptTokens: 9, contextLength: 4096 });

/** The field a call's REQUEST_INVALID names ('none' when it passes). */
function fieldOf(call: () => unknown): string | undefined {
  try {
    call();
  } catch (error) {
    if (isGlassboxError(error, 'REQUEST_INVALID')) return error.field;
    throw error;
  }
  return 'none';
}

describe('the normalized request', () => {
  it('keeps only what determines the output, defaults filled in, in RFC 8785 canonical JSON', () => {
    expect(request).toEqual({
      kind: 'chat',
      messages: [{ role: 'user', content: 'Hi' }],
      model,
      params: { temperature: 0.7, topP: 1, topK: 3, seed: 42n, maxTokens: 16, stop: ['\n\n'] },
    });
    expect(canonicalLlmRequest(request)).toBe(
      `{"kind":"chat","messages":[{"content":"Hi","role":"user"}],"model":"${model}","params":{"maxTokens":16,"seed":"42","stop":["\\n\\n"],"temperature":0.7,"topK":3,"topP":1}}`,
    );
  });

  it('fills in temperature 1, top_p 1, top_k 0, max_tokens = context − prompt, stop [] and a random seed', () => {
    const draft = parseLlmRequest({ kind: 'completion', model, prompt: 'Once' });
    const a = completeLlmRequest(draft, { promptTokens: 2, contextLength: 10, seed: () => 7n });
    expect(a).toEqual({
      kind: 'completion',
      prompt: 'Once',
      model,
      params: { temperature: 1, topP: 1, topK: 0, seed: 7n, maxTokens: 8, stop: [] },
    });
    const seeds = new Set(
      [1, 2, 3].map(() => completeLlmRequest(draft, { promptTokens: 2, contextLength: 10 }).params.seed),
    );
    expect(seeds.size).toBe(3);
    for (const seed of seeds) expect(seed >= 0n && seed < 1n << 64n).toBe(true);
  });

  it('carries logprobs only when asked, and seeds beyond 2^53 as decimal strings', () => {
    const draft = parseLlmRequest({ ...body, logprobs: true, top_logprobs: 5, seed: '18446744073709551615' });
    const r = completeLlmRequest(draft, { promptTokens: 9, contextLength: 4096 });
    expect(r.topLogprobs).toBe(5);
    expect(r.params.seed).toBe(18446744073709551615n);
    expect(canonicalLlmRequest(r)).toContain('"logprobs":true');
    expect(canonicalLlmRequest(r)).toContain('"seed":"18446744073709551615"');
    expect(canonicalLlmRequest(r)).toContain('"top_logprobs":5');
  });

  it('refuses out-of-range fields, naming them', () => {
    const bad = (patch: Record<string, unknown>) => fieldOf(() => parseLlmRequest({ ...body, ...patch }));
    expect(bad({})).toBe('none');
    expect(bad({ seed: -1 })).toBe('seed');
    expect(bad({ seed: '18446744073709551616' })).toBe('seed');
    expect(bad({ seed: 1.5 })).toBe('seed');
    expect(bad({ seed: '007' })).toBe('seed');
    expect(bad({ temperature: 2.01 })).toBe('temperature');
    expect(bad({ temperature: -0.1 })).toBe('temperature');
    expect(bad({ temperature: 2 })).toBe('none');
    expect(bad({ top_p: 0 })).toBe('top_p');
    expect(bad({ top_p: 1.01 })).toBe('top_p');
    expect(bad({ top_k: 2.5 })).toBe('top_k');
    expect(bad({ top_k: -1 })).toBe('top_k');
    expect(bad({ max_tokens: 0 })).toBe('max_tokens');
    expect(bad({ stop: ['a', 'b', 'c', 'd', 'e'] })).toBe('stop');
    expect(bad({ stop: ['a', 'x'.repeat(257)] })).toBe('stop.1');
    expect(bad({ stop: 'x'.repeat(256) })).toBe('none');
    expect(bad({ stop: [''] })).toBe('stop.0');
    expect(bad({ messages: [{ role: 'wizard', content: 'x' }] })).toBe('messages.0.role');
    expect(bad({ messages: [] })).toBe('messages');
    expect(bad({ model: 'gpt-4' })).toBe('model');
    expect(bad({ top_logprobs: 3 })).toBe('top_logprobs');
    expect(bad({ logprobs: true, top_logprobs: 21 })).toBe('top_logprobs');
  });

  it('refuses a prompt that leaves no room, or max_tokens beyond the context', () => {
    const draft = parseLlmRequest(body);
    expect(fieldOf(() => completeLlmRequest(draft, { promptTokens: 10, contextLength: 10 }))).toBe(
      'messages',
    );
    expect(fieldOf(() => completeLlmRequest(draft, { promptTokens: 9, contextLength: 24 }))).toBe(
      'max_tokens',
    );
    expect(fieldOf(() => completeLlmRequest(draft, { promptTokens: 9, contextLength: 25 }))).toBe('none');
  });
});

describe('a continuation (glassbox.prefix_ids)', () => {
  // Qwen3's vocabulary and EOS ids (<|im_end|>, <|endoftext|>).
  const vocabulary = { vocabSize: 151936, eosTokenIds: [151645, 151643] };
  const continued = (prefix: unknown, context: Partial<Parameters<typeof completeLlmRequest>[1]> = {}) =>
    completeLlmRequest(parseLlmRequest({ ...body, glassbox: { prefix_ids: prefix, token_ids: true } }), {
      promptTokens: 9,
      contextLength: 4096,
      vocabulary,
      ...context,
    });

  it('carries the prefix in the request, its canonical JSON and so its inputHash', () => {
    const r = continued([9707, 0]);
    expect(r.prefixIds).toEqual([9707, 0]);
    expect(canonicalLlmRequest(r)).toBe(
      canonicalLlmRequest(request).replace(/}$/, ',"prefix_ids":[9707,0]}'),
    );
    expect(llmInputHash(r, promptIds)).not.toBe(llmInputHash(request, promptIds));
    // a tampered prefix is another request
    expect(llmInputHash(continued([9707, 1]), promptIds)).not.toBe(llmInputHash(r, promptIds));
    expect(decodeLlmInput(llmInputData(r, promptIds))).toEqual({ request: r, promptIds });
  });

  it('leaves a request with an empty or no prefix exactly as before (same hash)', () => {
    for (const r of [
      continued([]),
      completeLlmRequest(parseLlmRequest({ ...body, glassbox: {} }), {
        promptTokens: 9,
        contextLength: 4096,
      }),
    ]) {
      expect(r).toEqual(request);
      expect(llmInputHash(r, promptIds)).toBe(llmInputHash(request, promptIds));
    }
  });

  it('counts max_tokens after the prefix, and charges the prefix as input', () => {
    const r = continued([1, 2, 3], { contextLength: 28 });
    expect(
      completeLlmRequest(
        parseLlmRequest({ ...body, max_tokens: undefined, glassbox: { prefix_ids: [1, 2, 3] } }),
        { promptTokens: 9, contextLength: 20, vocabulary },
      ).params.maxTokens,
    ).toBe(8);
    expect(r.params.maxTokens).toBe(16);
    expect(() => continued([1, 2, 3], { contextLength: 27 })).toThrow(/at most 15 tokens to generate/);
    const counts = llmTokenCounts(r, promptIds.length, 4);
    expect(counts).toEqual({ promptTokens: 12, completionTokens: 4 });
    expect(tokenPrice(counts, { inputPrice: 10n, outputPrice: 30n })).toBe(240n);
    expect(llmTokenCounts(request, promptIds.length, 4)).toEqual({ promptTokens: 9, completionTokens: 4 });
  });

  it('refuses a bad prefix naming glassbox.prefix_ids', () => {
    expect(fieldOf(() => continued([1, 151935]))).toBe('none');
    expect(fieldOf(() => continued([1, -1]))).toBe('glassbox.prefix_ids');
    expect(fieldOf(() => continued([1, 2.5]))).toBe('glassbox.prefix_ids');
    expect(fieldOf(() => continued(['7']))).toBe('glassbox.prefix_ids');
    expect(fieldOf(() => continued(7))).toBe('glassbox.prefix_ids');
    expect(fieldOf(() => continued([1, 151936]))).toBe('glassbox.prefix_ids');
    expect(() => continued([1, 151936])).toThrow(/item 1 \(151936\) is not a token id/);
    expect(fieldOf(() => continued([151643, 5]))).toBe('glassbox.prefix_ids');
    expect(() => continued([5, 151645])).toThrow(/item 1 is the EOS id 151645/);
    // prompt + prefix + max_tokens over the context: the prefix is what does not fit
    expect(fieldOf(() => continued([1, 2], { contextLength: 26 }))).toBe('glassbox.prefix_ids');
    expect(fieldOf(() => continued([1, 2], { contextLength: 27 }))).toBe('none');
    // no room at all after the prefix
    expect(fieldOf(() => continued([1, 2], { contextLength: 11 }))).toBe('glassbox.prefix_ids');
    // max_tokens that never fit, prefix or not, is still max_tokens's fault
    expect(fieldOf(() => continued([1, 2], { contextLength: 20 }))).toBe('max_tokens');
  });

  it('refuses a stored prefix that is empty or not token ids', () => {
    const stored = canonicalLlmRequest(continued([9707, 0]));
    expect(parseCanonicalLlmRequest(stored).prefixIds).toEqual([9707, 0]);
    expect(fieldOf(() => parseCanonicalLlmRequest(stored.replace('[9707,0]', '[]')))).toBe(
      'request.prefix_ids',
    );
    expect(fieldOf(() => parseCanonicalLlmRequest(stored.replace('[9707,0]', '[9707,-1]')))).toBe(
      'request.prefix_ids',
    );
  });
});

describe('the data and hashes of a token receipt (docs/protocol.md worked example)', () => {
  it('encodes the input as {prompt_ids, request} and the output as {output_ids}', () => {
    expect(llmInputData(request, promptIds)).toEqual(
      encodeTensors({
        prompt_ids: { dtype: 'int32', shape: [9], data: Int32Array.from(promptIds) },
        request: { dtype: 'string', shape: [1], data: [canonicalLlmRequest(request)] },
      }),
    );
    expect(bytesToHex(llmOutputData(outputIds))).toBe(
      '0x0a0000006f75747075745f69647306010000000300000000000000eb250000000000005d500200',
    );
  });

  it('hashes them: small data is keccak256 of its bytes', () => {
    expect(llmOutputHash(outputIds)).toBe(keccak256(llmOutputData(outputIds)));
    expect(llmOutputHash(outputIds)).toBe(
      '0xf175692c08ff79ed0c4ad79c4865f08e8b383eed7d796261f8f0c39779d55f01',
    );
    expect(llmInputHash(request, promptIds)).toBe(keccak256(llmInputData(request, promptIds)));
    expect(llmInputHash(request, promptIds)).toBe(
      '0x342ca0b3ab1758bbcc2f91a393465c3d9db81ed7d1c6eff0faa5e757a3a3a4aa',
    );
  });

  it('hashes the params with their OpenAI names, the seed disclosed', () => {
    const json = '{"max_tokens":16,"seed":"42","stop":["\\n\\n"],"temperature":0.7,"top_k":3,"top_p":1}';
    expect(llmParamsHash(request.params)).toBe(keccak256(stringToBytes(json)));
    expect(llmParamsHash(request.params)).toBe(
      '0x53b5be37ed405d38e39596cb985971474b0b90c113e136184d7f08e7b2a6283f',
    );
    expect(llmParamsHash({ ...request.params, seed: 43n })).not.toBe(llmParamsHash(request.params));
  });

  it('prices prompt and completion tokens at their own prices', () => {
    expect(tokenPrice({ promptTokens: 9, completionTokens: 3 }, { inputPrice: 10n, outputPrice: 30n })).toBe(
      180n,
    );
    expect(() =>
      tokenPrice({ promptTokens: -1, completionTokens: 3 }, { inputPrice: 1n, outputPrice: 1n }),
    ).toThrow(/promptTokens/);
  });
});

describe('decoding stored data', () => {
  it('gives back the request and the prompt ids, and the output ids', () => {
    expect(decodeLlmInput(llmInputData(request, promptIds))).toEqual({ request, promptIds });
    const withLogprobs: LlmRequest = { ...request, topLogprobs: 2 };
    expect(decodeLlmInput(llmInputData(withLogprobs, [])).request).toEqual(withLogprobs);
    expect(decodeLlmOutput(llmOutputData(outputIds))).toEqual(outputIds);
  });

  it('refuses a request that is not canonical or not valid, naming the field', () => {
    const stored = canonicalLlmRequest(request);
    expect(fieldOf(() => parseCanonicalLlmRequest(stored.replace('"kind":"chat",', '"kind": "chat",')))).toBe(
      'request',
    );
    expect(fieldOf(() => parseCanonicalLlmRequest(stored.replace('"topP":1', '"topP":3')))).toBe(
      'request.params.topP',
    );
    expect(fieldOf(() => parseCanonicalLlmRequest(stored.replace('"seed":"42"', '"seed":42')))).toBe(
      'request.params.seed',
    );
    expect(fieldOf(() => parseCanonicalLlmRequest('{'))).toBe('request');
  });

  it('refuses data with other tensors', () => {
    const other = encodeTensors({ output_ids: { dtype: 'int32', shape: [1], data: Int32Array.from([1]) } });
    expect(() => decodeLlmInput(other)).toThrow(/not prompt_ids and request/);
    expect(() => decodeLlmOutput(llmInputData(request, promptIds))).toThrow(/not output_ids/);
    expect(() => decodeLlmOutput(new Uint8Array([1, 2, 3]))).toThrow(/not a canonical tensor encoding/);
    expect(() => llmOutputData([1, -2])).toThrow(/output_ids.1/);
  });
});

describe('docs/protocol.md, LLM generations', () => {
  it('spells the worked examples with the numbers the code gives', () => {
    const docs = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8');
    // The page writes minus signs as U+2212.
    const num = (x: number) => String(x).replace('-', '−');
    const section = docs.slice(docs.indexOf('## LLM generations'), docs.indexOf('## Vouchers'));
    const row = Float32Array.from([1.5, -0.25, 3, 2.75, 0.5, 2]);
    const params = { temperature: 0.7, topP: 1, topK: 3 };
    const pick = explainSample(row, params, 42n, 0);
    const expected = [
      canonicalLlmRequest(request),
      llmInputHash(request, promptIds),
      llmOutputHash(outputIds),
      bytesToHex(llmOutputData(outputIds)).slice(2),
      llmParamsHash(request.params),
      ...pick.kept.flatMap((k) => [num(k.s), num(k.g), num(k.n)]),
      num(gumbelNoise(42n, 0, 0)),
      num(gumbelNoise(42n, 0, 4)),
      ...[2, 4].map((c) => num(tokenMargin(row, params, 42n, 0, c).margin)),
      ...[...philox4x32([0, 0, 0, 0], [42, 0]), ...philox4x32([1, 0, 0, 0], [42, 0])].map(
        (w) => `0x${w.toString(16).padStart(8, '0')}`,
      ),
      `Session(${SESSION_TYPES.Session.map((f) => `${f.type} ${f.name}`).join(',')})`,
    ];
    for (const text of expected) expect(section, text).toContain(text);
  });
});
