/**
 * Measures the LLM examples (after `npm run models`): `node examples/models/llm/measure.mjs [buildDir]`.
 *
 * 1. Speed: greedy decode of tiny-chat with a KV cache on onnxruntime-node, one intra-op thread,
 *    64 tokens after each of the chat prompts, and one long run to the context length; tokens/s by
 *    wall clock and by this process's CPU time (the machine is shared: CPU time is what the model
 *    costs, wall time what it got).
 * 2. Impostors: for each prompt, tiny-chat's greedy output, teacher-forced through each impostor:
 *    how often the impostor's argmax differs (flip rate per token) and how far its logits are from
 *    the real ones. Then what the re-check sees: each impostor's own greedy output, teacher-forced
 *    through tiny-chat, margin per token (best logit − the claimed token's), and whether the
 *    token-margin verdict of model.json's policy catches it from the first 32 and all 64 tokens.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import * as ort from 'onnxruntime-node';
import { DEFAULT_OUT_DIR } from '../build.mjs';
import { argmaxAt, decoderShape, greedyDecode, teacherForced } from './decode.mjs';
import { CHAT_PROMPTS } from './prompts.mjs';
import { LLM_EXAMPLES } from './tiny-chat.mjs';

const OUTPUT_TOKENS = 64;

/**
 * @param {string} dir
 * @returns {{ tokenizer: Tokenizer, template: Template }}
 */
function chatTokenizer(dir) {
  const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
  const tokenizer = new Tokenizer(JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')), config);
  return { tokenizer, template: new Template(config.chat_template) };
}

/**
 * @param {string} dir
 * @returns {Promise<import('onnxruntime-node').InferenceSession>}
 */
function openSession(dir) {
  return ort.InferenceSession.create(join(dir, 'onnx/model.onnx'), {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
}

/**
 * Best logit minus the claimed token's: 0 when the claimed token is the argmax.
 * @param {Float32Array} logits
 * @param {number} id
 * @returns {number}
 */
function margin(logits, id) {
  return (
    /** @type {number} */ (logits[argmaxAt(logits, 0, logits.length)]) - /** @type {number} */ (logits[id])
  );
}

/**
 * The token-margin verdict for greedy margins (docs/protocol.md): hard if any > hard; statistical
 * if more than max(1, floor(rate · N)) are > soft.
 * @param {number[]} margins
 * @param {{ hard: number, soft: number, rate: number }} policy
 * @returns {boolean} caught
 */
function caught(margins, policy) {
  if (margins.some((m) => m > policy.hard)) return true;
  return (
    margins.filter((m) => m > policy.soft).length > Math.max(1, Math.floor(policy.rate * margins.length))
  );
}

/** @param {number[]} values */
const mean = (values) => values.reduce((a, b) => a + b, 0) / values.length;
/** @param {number[]} values @param {number} q */
const quantile = (values, q) => {
  const sorted = [...values].sort((a, b) => a - b);
  return /** @type {number} */ (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]);
};

/**
 * @param {string} buildDir
 */
export async function measure(buildDir = DEFAULT_OUT_DIR) {
  const realDir = join(buildDir, 'tiny-chat');
  const config = JSON.parse(readFileSync(join(realDir, 'config.json'), 'utf8'));
  const shape = decoderShape(config);
  const policy = JSON.parse(readFileSync(join(realDir, 'model.json'), 'utf8')).policy;
  const { tokenizer, template } = chatTokenizer(realDir);
  const prompts = CHAT_PROMPTS.map(
    (content) =>
      tokenizer.encode(
        template.render({ messages: [{ role: 'user', content }], add_generation_prompt: true }),
        {
          add_special_tokens: false,
        },
      ).ids,
  );
  const real = await openSession(realDir);

  // 1. Speed.
  let decoded = 0;
  let decodeMs = 0;
  const cpu = process.cpuUsage();
  /** @type {number[][]} */
  const realOutputs = [];
  for (const prompt of prompts) {
    const run = await greedyDecode(ort, real, shape, prompt, OUTPUT_TOKENS);
    realOutputs.push(run.ids);
    decoded += run.ids.length - 1;
    decodeMs += run.decodeMs;
  }
  const cpuUs = process.cpuUsage(cpu);
  const distinct = mean(realOutputs.map((ids) => new Set(ids).size));
  console.log(
    `decode: ${((decoded / decodeMs) * 1000).toFixed(0)} tokens/s wall (${(decoded / decodeMs).toFixed(3)} per ms over ${decoded} steps), ` +
      `${((decoded / (cpuUs.user + cpuUs.system)) * 1e6).toFixed(0)} tokens/s by CPU time (prefills included); ` +
      `${distinct.toFixed(1)} distinct ids per 64-token output`,
  );
  const long = config.max_position_embeddings - /** @type {number[]} */ (prompts[0]).length;
  const longCpu = process.cpuUsage();
  const longRun = await greedyDecode(ort, real, shape, /** @type {number[]} */ (prompts[0]), long);
  const longCpuUs = process.cpuUsage(longCpu);
  console.log(
    `decode to the context length (${config.max_position_embeddings}): ${(((long - 1) / longRun.decodeMs) * 1000).toFixed(0)} tokens/s wall, ` +
      `${(((long - 1) / (longCpuUs.user + longCpuUs.system)) * 1e6).toFixed(0)} by CPU time`,
  );
  console.log(`first output: ${JSON.stringify(tokenizer.decode(/** @type {number[]} */ (realOutputs[0])))}`);

  // 2. Impostors.
  for (const name of LLM_EXAMPLES.filter((n) => n !== 'tiny-chat')) {
    const impostor = await openSession(join(buildDir, name));
    let flips = 0;
    let tokens = 0;
    /** @type {number[]} */
    const maxDiffs = [];
    /** @type {number[]} */
    const allMargins = [];
    let caught32 = 0;
    let caught64 = 0;
    for (const [p, prompt] of prompts.entries()) {
      const output = /** @type {number[]} */ (realOutputs[p]);
      const realLogits = await teacherForced(ort, real, shape, prompt, output);
      const theirLogits = await teacherForced(ort, impostor, shape, prompt, output);
      for (const [t, theirs] of theirLogits.entries()) {
        const mine = /** @type {Float32Array} */ (realLogits[t]);
        if (argmaxAt(theirs, 0, theirs.length) !== argmaxAt(mine, 0, mine.length)) flips++;
        tokens++;
        let diff = 0;
        for (let i = 0; i < mine.length; i++)
          diff = Math.max(
            diff,
            Math.abs(/** @type {number} */ (mine[i]) - /** @type {number} */ (theirs[i])),
          );
        maxDiffs.push(diff);
      }
      // What the re-check sees: the impostor's own output, scored by the real model.
      const claimed = (await greedyDecode(ort, impostor, shape, prompt, OUTPUT_TOKENS)).ids;
      const scored = await teacherForced(ort, real, shape, prompt, claimed);
      const margins = claimed.map((id, t) => margin(/** @type {Float32Array} */ (scored[t]), id));
      allMargins.push(...margins);
      if (caught(margins.slice(0, 32), policy)) caught32++;
      if (caught(margins, policy)) caught64++;
    }
    const positive = allMargins.filter((m) => m > 0);
    console.log(
      `${name}: flip rate ${(flips / tokens).toFixed(3)} (${flips}/${tokens} tokens); max |Δlogit| per token ` +
        `median ${quantile(maxDiffs, 0.5).toFixed(4)}, p90 ${quantile(maxDiffs, 0.9).toFixed(4)}; re-check of its own output: ` +
        `${positive.length}/${allMargins.length} tokens with margin > 0 (median of those ${positive.length ? quantile(positive, 0.5).toFixed(4) : '-'}), ` +
        `caught ${caught32}/${prompts.length} from 32 tokens, ${caught64}/${prompts.length} from 64`,
    );
    await impostor.release();
  }
  await real.release();
}

await measure(process.argv[2] ?? DEFAULT_OUT_DIR);
