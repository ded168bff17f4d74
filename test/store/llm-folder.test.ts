import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import { describe, expect, it } from 'vitest';
import { buildExampleModels, DEFAULT_OUT_DIR } from '../../examples/models/build.mjs';
import { fileCid, isGlassboxError, type GlassboxError } from '../../src/protocol/index.js';
import {
  createMemoryStore,
  loadModel,
  packLlmFolder,
  packModelFolder,
  type PackLlmFolderParameters,
} from '../../src/store/index.js';
import { tempDir } from './temp-dir.js';

const { onnx } = onnxProto;
const TINY_CHAT = join(DEFAULT_OUT_DIR, 'tiny-chat');

async function caught(promise: Promise<unknown>): Promise<GlassboxError> {
  try {
    await promise;
  } catch (error) {
    if (isGlassboxError(error)) return error;
    throw error;
  }
  throw new Error('expected a GlassboxError, but nothing was thrown');
}

/**
 * A small export-shaped graph: input_ids → Gather over a [vocab][vocab] table → `outputName`
 * [batch, seq, vocab], the table in an external data file as Optimum writes large weights.
 */
function graph(options: { vocab: number; outputName?: string; externalData?: string }): Uint8Array {
  const { vocab } = options;
  const table = new Uint8Array(vocab * vocab * 4);
  const initializer =
    options.externalData === undefined
      ? { name: 'table', dataType: onnx.TensorProto.DataType.FLOAT, dims: [vocab, vocab], rawData: table }
      : {
          name: 'table',
          dataType: onnx.TensorProto.DataType.FLOAT,
          dims: [vocab, vocab],
          dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
          externalData: [
            { key: 'location', value: options.externalData },
            { key: 'offset', value: '0' },
            { key: 'length', value: String(table.length) },
          ],
        };
  const tensor = (name: string, elemType: number, dims: (number | string)[]) => ({
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  });
  return onnx.ModelProto.encode({
    irVersion: onnx.Version.IR_VERSION,
    opsetImport: [{ domain: '', version: 13 }],
    graph: {
      name: 'fixture',
      node: [{ opType: 'Gather', input: ['table', 'input_ids'], output: [options.outputName ?? 'logits'] }],
      initializer: [initializer],
      input: [tensor('input_ids', onnx.TensorProto.DataType.INT64, ['batch_size', 'sequence_length'])],
      output: [
        tensor(options.outputName ?? 'logits', onnx.TensorProto.DataType.FLOAT, [
          'batch_size',
          'sequence_length',
          vocab,
        ]),
      ],
    },
  }).finish();
}

type FixtureFiles = Record<string, Uint8Array | object | null>;

/** A folder of an export: `files` by path; JSON for objects; null leaves a file out. */
async function exportFolder(overrides: FixtureFiles = {}): Promise<string> {
  const dir = await tempDir('glassbox-llm-folder-');
  const files: FixtureFiles = {
    'config.json': { model_type: 'qwen2', vocab_size: 8, max_position_embeddings: 32, eos_token_id: 7 },
    'generation_config.json': { eos_token_id: [6, 7] },
    'tokenizer.json': { added_tokens: [{ id: 7, content: '<|im_end|>' }] },
    'tokenizer_config.json': { eos_token: '<|im_end|>', chat_template: '{{ messages }}' },
    'onnx/model.onnx': graph({ vocab: 8, externalData: 'model.onnx_data' }),
    'onnx/model.onnx_data': new Uint8Array(8 * 8 * 4),
    'onnx/model_q4.onnx': graph({ vocab: 8 }),
    ...overrides,
  };
  for (const [path, content] of Object.entries(files)) {
    if (content === null) continue;
    await mkdir(join(dir, path, '..'), { recursive: true });
    await writeFile(join(dir, path), content instanceof Uint8Array ? content : JSON.stringify(content));
  }
  return dir;
}

describe('packLlmFolder', () => {
  it('packs tiny-chat as format llm: every file content-addressed, llm fields from its JSON files', async () => {
    const store = createMemoryStore();
    const { id, manifest } = await packLlmFolder(store, TINY_CHAT);
    expect(manifest).toMatchObject({
      format: 'llm',
      entry: 'onnx/model.onnx',
      name: 'tiny-chat',
      version: '1.0.0',
      license: 'Apache-2.0',
      // the calibrated policy the folder's pack options carry (docs/recheck-calibration.md)
      policy: (JSON.parse(await readFile(join(TINY_CHAT, 'model.json'), 'utf8')) as { policy: unknown })
        .policy,
      llm: {
        tokenizer: 'tokenizer.json',
        tokenizerConfig: 'tokenizer_config.json',
        config: 'config.json',
        generationConfig: 'generation_config.json',
        chatTemplate: 'tokenizer_config.json',
        contextLength: 4096,
        eosTokenIds: [151645, 151643],
        vocabSize: 151936,
      },
    });
    // model.json holds the pack options: it is not part of the model.
    expect(manifest.files.map((f) => f.path)).toEqual([
      'config.json',
      'generation_config.json',
      'onnx/model.onnx',
      'tokenizer.json',
      'tokenizer_config.json',
    ]);
    expect(manifest.inputs.map((i) => i.name)).toEqual([
      'input_ids',
      'attention_mask',
      'position_ids',
      'past_key_values.0.key',
      'past_key_values.0.value',
      'past_key_values.1.key',
      'past_key_values.1.value',
      'num_logits_to_keep',
    ]);
    expect(manifest.outputs[0]).toEqual({
      name: 'logits',
      dtype: 'float32',
      shape: ['batch_size', 'num_logits', 151936],
    });
    const pkg = await loadModel(store, id);
    for (const file of manifest.files) {
      const bytes = new Uint8Array(await readFile(join(TINY_CHAT, file.path)));
      // Buffer.compare: toEqual walks megabytes element by element.
      expect(Buffer.compare(pkg.files.get(file.path)!, bytes), file.path).toBe(0);
      expect(file.cid).toBe(await fileCid(bytes));
    }
    // glassbox model pack <folder> goes through packModelFolder, which finds the layout.
    expect((await packModelFolder(createMemoryStore(), TINY_CHAT)).id).toBe(id);
  });

  it('gives tiny-chat the same id from another build', async () => {
    const out = await tempDir('glassbox-llm-build-');
    buildExampleModels(out);
    const [here, there] = await Promise.all([
      packLlmFolder(createMemoryStore(), TINY_CHAT),
      packLlmFolder(createMemoryStore(), join(out, 'tiny-chat')),
    ]);
    expect(there.id).toBe(here.id);
    const impostor = await packLlmFolder(createMemoryStore(), join(out, 'tiny-chat-int8'));
    expect(impostor.id).not.toBe(here.id);
  });

  it('takes overrides over model.json: context length, name, policy', async () => {
    const policy = { kind: 'token-margin', hard: 0.5, soft: 0.05, rate: 0.1 } as const;
    const overrides: PackLlmFolderParameters = { contextLength: 2048, name: 'renamed', policy };
    const { manifest } = await packLlmFolder(createMemoryStore(), TINY_CHAT, overrides);
    expect(manifest).toMatchObject({ name: 'renamed', policy });
    expect(manifest.format === 'llm' && manifest.llm.contextLength).toBe(2048);
  });

  it("packs an export's external data, and only its own graph of the onnx folder", async () => {
    const dir = await exportFolder();
    const { manifest } = await packModelFolder(createMemoryStore(), dir);
    expect(manifest.files.map((f) => f.path)).toEqual([
      'config.json',
      'generation_config.json',
      'onnx/model.onnx',
      'onnx/model.onnx_data',
      'tokenizer.json',
      'tokenizer_config.json',
    ]);
    // Named after its folder without model.json; eos ids: the union of both configs.
    expect(manifest).toMatchObject({
      format: 'llm',
      name: dir.split('/').at(-1),
      llm: { eosTokenIds: [7, 6], contextLength: 32, vocabSize: 8, chatTemplate: 'tokenizer_config.json' },
    });
  });

  it('points chatTemplate at chat_template.jinja when the folder has one; none when there is no template', async () => {
    const withJinja = await exportFolder({
      'chat_template.jinja': new TextEncoder().encode('{{ messages }}'),
    });
    const jinja = (await packLlmFolder(createMemoryStore(), withJinja)).manifest;
    expect(jinja.format === 'llm' && jinja.llm.chatTemplate).toBe('chat_template.jinja');
    const plain = await exportFolder({ 'tokenizer_config.json': { eos_token: '<|im_end|>' } });
    const completion = (await packLlmFolder(createMemoryStore(), plain)).manifest;
    expect(completion.format === 'llm' && completion.llm).not.toHaveProperty('chatTemplate');
  });

  it("finds the eos id through tokenizer_config's eos_token when neither config has one", async () => {
    const dir = await exportFolder({
      'config.json': { vocab_size: 8, max_position_embeddings: 32 },
      'generation_config.json': null,
    });
    const { manifest } = await packLlmFolder(createMemoryStore(), dir);
    expect(manifest.format === 'llm' && manifest.llm).toMatchObject({ eosTokenIds: [7] });
    expect(manifest.format === 'llm' && manifest.llm).not.toHaveProperty('generationConfig');
  });

  describe('refuses, naming the file and field', () => {
    it('a folder without tokenizer.json', async () => {
      const error = await caught(
        packModelFolder(createMemoryStore(), await exportFolder({ 'tokenizer.json': null })),
      );
      expect(error.code).toBe('MODEL_INVALID');
      expect(error.field).toBe('tokenizer.json');
      expect(error.shortMessage).toContain('has no tokenizer.json');
    });

    it('a config.json without vocab_size', async () => {
      const dir = await exportFolder({ 'config.json': { max_position_embeddings: 32, eos_token_id: 7 } });
      const error = await caught(packModelFolder(createMemoryStore(), dir));
      expect(error.code).toBe('MANIFEST_INVALID');
      expect(error.field).toBe('config.json.vocab_size');
      expect(error.shortMessage).toBe('config.json has no vocab_size');
    });

    it('a config.json without max_position_embeddings, unless the context length is given', async () => {
      const dir = await exportFolder({ 'config.json': { vocab_size: 8, eos_token_id: 7 } });
      const error = await caught(packLlmFolder(createMemoryStore(), dir));
      expect(error.field).toBe('config.json.max_position_embeddings');
      const { manifest } = await packLlmFolder(createMemoryStore(), dir, { contextLength: 64 });
      expect(manifest.format === 'llm' && manifest.llm.contextLength).toBe(64);
    });

    it('a graph without logits', async () => {
      const dir = await exportFolder({ 'onnx/model.onnx': graph({ vocab: 8, outputName: 'scores' }) });
      const error = await caught(packModelFolder(createMemoryStore(), dir));
      expect(error.code).toBe('MODEL_INVALID');
      expect(error.field).toBe('outputs');
      expect(error.shortMessage).toBe('onnx/model.onnx: the graph has no output "logits"');
    });

    it('logits over another vocabulary than config.json says', async () => {
      const dir = await exportFolder({
        'config.json': { vocab_size: 9, max_position_embeddings: 32, eos_token_id: 7 },
      });
      const error = await caught(packModelFolder(createMemoryStore(), dir));
      expect(error.field).toBe('config.json.vocab_size');
      expect(error.shortMessage).toContain('scores 8 ids');
    });

    it('a graph whose external data file is missing', async () => {
      const error = await caught(
        packModelFolder(createMemoryStore(), await exportFolder({ 'onnx/model.onnx_data': null })),
      );
      expect(error.code).toBe('MODEL_INVALID');
      expect(error.field).toBe('onnx/model.onnx_data');
      expect(error.shortMessage).toContain('external data of onnx/model.onnx');
    });

    it('no end-of-sequence token anywhere', async () => {
      const dir = await exportFolder({
        'config.json': { vocab_size: 8, max_position_embeddings: 32 },
        'generation_config.json': null,
        'tokenizer_config.json': { chat_template: '{{ messages }}' },
      });
      const error = await caught(packLlmFolder(createMemoryStore(), dir));
      expect(error.field).toBe('config.json.eos_token_id');
    });

    it('ONNX-only pack options for an LLM folder', async () => {
      const error = await caught(
        packModelFolder(createMemoryStore(), TINY_CHAT, { labels: { logits: ['a'] } }),
      );
      expect(error.field).toBe('labels');
    });

    it('a model.json with an unknown field', async () => {
      const dir = await exportFolder({ 'model.json': { name: 'x', tokenizer: 'other.json' } });
      const error = await caught(packLlmFolder(createMemoryStore(), dir));
      expect(error.code).toBe('MANIFEST_INVALID');
      expect(error.shortMessage).toContain('model.json');
    });
  });

  it('an ONNX model folder is still packed as format onnx', async () => {
    const dir = await tempDir('glassbox-onnx-folder-');
    await copyFile(join(DEFAULT_OUT_DIR, 'iris', 'model.onnx'), join(dir, 'model.onnx'));
    const { manifest } = await packModelFolder(createMemoryStore(), dir);
    expect(manifest.format).toBe('onnx');
    await rm(dir, { recursive: true, force: true });
  });
});
