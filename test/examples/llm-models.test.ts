import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_OUT_DIR, type LlmExampleName } from '../../examples/models/build.mjs';
import {
  argmaxAt,
  decoderFeeds,
  decoderShape,
  greedyDecode,
  teacherForced,
  type DecoderShape,
} from '../../examples/models/llm/decode.mjs';
import { CHAT_PROMPTS } from '../../examples/models/llm/prompts.mjs';
import { llmExamples } from '../../examples/models/llm/tiny-chat.mjs';
import { judgeMargins, tokenMargin } from '../../src/protocol/sampling.js';
import { LLM_EXAMPLES } from '../support/examples.js';

const dirOf = (name: LlmExampleName) => join(DEFAULT_OUT_DIR, name);
const GREEDY = { temperature: 0, topP: 1, topK: 0 };

function openSession(name: LlmExampleName): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(join(dirOf(name), 'onnx/model.onnx'), {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
  });
}

/** Chat prompts as tiny-chat's own tokenizer and ChatML template make them. */
function chatPrompts(count: number): number[][] {
  const dir = dirOf('tiny-chat');
  const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
  const tokenizer = new Tokenizer(JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')), config);
  const template = new Template(config.chat_template);
  return CHAT_PROMPTS.slice(0, count).map(
    (content) =>
      tokenizer.encode(
        template.render({ messages: [{ role: 'user', content }], add_generation_prompt: true }),
        {
          add_special_tokens: false,
        },
      ).ids,
  );
}

describe('the LLM examples (examples/models/llm)', () => {
  it('are rebuilt byte for byte, and the same as the files on disk', () => {
    const [first, second] = [llmExamples(), llmExamples()];
    for (const name of LLM_EXAMPLES) {
      for (const [path, content] of Object.entries(first[name].files)) {
        const again = second[name].files[path]!;
        if (content instanceof Uint8Array) {
          expect(Buffer.compare(content, again as Uint8Array), `${name}/${path}`).toBe(0);
          expect(
            Buffer.compare(content, readFileSync(join(dirOf(name), path))),
            `${name}/${path} on disk`,
          ).toBe(0);
        } else {
          expect(again, `${name}/${path}`).toEqual(content);
          expect(JSON.parse(readFileSync(join(dirOf(name), path), 'utf8'))).toEqual(content);
        }
      }
    }
  });

  it('have the Hugging Face layout: Qwen3 config, ChatML template, the graph a Qwen3 export has', async () => {
    const config = JSON.parse(readFileSync(join(dirOf('tiny-chat'), 'config.json'), 'utf8'));
    expect(config).toMatchObject({ model_type: 'qwen3', vocab_size: 151936, eos_token_id: 151645 });
    expect(config.max_position_embeddings).toBeGreaterThanOrEqual(2048);
    const tokenizerConfig = JSON.parse(
      readFileSync(join(dirOf('tiny-chat'), 'tokenizer_config.json'), 'utf8'),
    );
    expect(tokenizerConfig.chat_template).toContain('<|im_start|>');
    const session = await openSession('tiny-chat');
    const cache = Array.from({ length: config.num_hidden_layers }, (_, l) => [
      `${l}.key`,
      `${l}.value`,
    ]).flat();
    expect(session.inputNames).toEqual([
      'input_ids',
      'attention_mask',
      'position_ids',
      ...cache.map((n) => `past_key_values.${n}`),
      'num_logits_to_keep',
    ]);
    expect(session.outputNames).toEqual(['logits', ...cache.map((n) => `present.${n}`)]);
    await session.release();
  });

  describe('tiny-chat on onnxruntime-node', () => {
    let session: ort.InferenceSession;
    let shape: DecoderShape;
    beforeAll(async () => {
      session = await openSession('tiny-chat');
      shape = decoderShape(JSON.parse(readFileSync(join(dirOf('tiny-chat'), 'config.json'), 'utf8')));
    });
    afterAll(() => session.release());

    it('decodes step by step through the KV cache as one prefill run over the whole sequence scores it', async () => {
      for (const prompt of chatPrompts(3)) {
        const run = await greedyDecode(ort, session, shape, prompt, 32, { keepLogits: true });
        const forced = await teacherForced(ort, session, shape, prompt, run.ids);
        for (const [t, step] of run.steps.entries()) {
          const whole = forced[t]!;
          expect(argmaxAt(whole, 0, whole.length), `position ${t}`).toBe(run.ids[t]);
          let diff = 0;
          for (let i = 0; i < step.length; i++) diff = Math.max(diff, Math.abs(step[i]! - whole[i]!));
          expect(diff, `position ${t}`).toBeLessThan(1e-3);
        }
        // Not a model that says one token forever: the re-check needs tokens to disagree on.
        expect(new Set(run.ids).size).toBeGreaterThan(16);
      }
    });

    it('computes lm_head for the last num_logits_to_keep positions only, the same rows bit for bit', async () => {
      const [prompt] = chatPrompts(1) as [number[]];
      const n = prompt.length;
      const logitsOf = async (keep: number) => {
        const { logits } = await session.run(decoderFeeds(ort, shape, prompt, 0, undefined, keep));
        return logits!;
      };
      const all = await logitsOf(0);
      expect(all.dims).toEqual([1, n, shape.vocab]);
      const whole = all.data as Float32Array;
      // the prefill's one row (generation), some rows (the re-check), more rows than fed (all)
      for (const keep of [1, 5, n + 3]) {
        const kept = await logitsOf(keep);
        const rows = Math.min(keep, n);
        expect(kept.dims).toEqual([1, rows, shape.vocab]);
        const expected = whole.subarray((n - rows) * shape.vocab);
        // Buffer.compare: the bits, NaN and -0 included, without walking the rows element by element
        const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
        expect(Buffer.compare(bytes(kept.data as Float32Array), bytes(expected)), `keep ${keep}`).toBe(0);
      }
    });

    it('masks padding: a left-padded prompt gives the same next-token logits', async () => {
      const [prompt] = chatPrompts(1) as [number[]];
      // The logits after the prompt's last token: what predicts a first output token (any id).
      const plain = (await teacherForced(ort, session, shape, prompt, [0]))[0]!;
      const pad = 3;
      const ids = [...new Array<number>(pad).fill(151643), ...prompt];
      const n = ids.length;
      const feeds: Record<string, ort.Tensor> = {
        input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, n]),
        attention_mask: new ort.Tensor(
          'int64',
          BigInt64Array.from(ids, (_, i) => (i < pad ? 0n : 1n)),
          [1, n],
        ),
        position_ids: new ort.Tensor(
          'int64',
          BigInt64Array.from(ids, (_, i) => BigInt(Math.max(0, i - pad))),
          [1, n],
        ),
      };
      for (let l = 0; l < shape.layers; l++)
        for (const kv of ['key', 'value'])
          feeds[`past_key_values.${l}.${kv}`] = new ort.Tensor('float32', new Float32Array(0), [
            1,
            shape.kvHeads,
            0,
            shape.headDim,
          ]);
      feeds['num_logits_to_keep'] = new ort.Tensor('int64', BigInt64Array.of(0n), []);
      const logits = (await session.run(feeds)).logits!.data as Float32Array;
      const last = logits.subarray((n - 1) * shape.vocab, n * shape.vocab);
      let diff = 0;
      for (let i = 0; i < last.length; i++) diff = Math.max(diff, Math.abs(last[i]! - plain[i]!));
      expect(diff).toBeLessThan(1e-3);
    });
  });

  describe('the impostors', () => {
    const policy = JSON.parse(readFileSync(join(dirOf('tiny-chat'), 'model.json'), 'utf8')).policy;
    let real: ort.InferenceSession;
    let shape: DecoderShape;
    let prompts: number[][];
    beforeAll(async () => {
      real = await openSession('tiny-chat');
      shape = decoderShape(JSON.parse(readFileSync(join(dirOf('tiny-chat'), 'config.json'), 'utf8')));
      prompts = chatPrompts(3);
    });
    afterAll(() => real.release());

    /** The verdict of the re-check: tiny-chat teacher-forced on `output`, greedy margins judged. */
    async function recheck(prompt: number[], output: number[]) {
      const logits = await teacherForced(ort, real, shape, prompt, output);
      return judgeMargins(
        output.map((id, t) => tokenMargin(logits[t]!, GREEDY, 0n, t, id)),
        policy,
      );
    }

    it("pass the real model's own greedy output", async () => {
      for (const prompt of prompts) {
        const output = (await greedyDecode(ort, real, shape, prompt, 32)).ids;
        const verdict = await recheck(prompt, output);
        expect(verdict.ok, JSON.stringify(verdict)).toBe(true);
      }
    });

    it.each(['tiny-chat-other', 'tiny-chat-int8', 'tiny-chat-perturbed'] as const)(
      '%s is caught from each single response of 32 tokens',
      async (name) => {
        const impostor = await openSession(name);
        try {
          for (const prompt of prompts) {
            const output = (await greedyDecode(ort, impostor, shape, prompt, 32)).ids;
            const verdict = await recheck(prompt, output);
            expect(verdict.ok, `${name}: ${JSON.stringify(verdict)}`).toBe(false);
          }
        } finally {
          await impostor.release();
        }
      },
    );
  });
});
