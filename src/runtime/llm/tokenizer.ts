import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { GlassboxError } from '../../protocol/errors.js';
import type { LlmManifest, ModelPackage } from '../../protocol/manifest.js';
import type { ChatMessage, LlmPrompt, PromptTokens } from '../engine.js';

/*
 * Templating and tokenizing with the model's own files. We use @huggingface/tokenizers and
 * @huggingface/jinja: they are the tokenizer and the Jinja interpreter transformers.js itself runs
 * (split out of it by Hugging Face, kept by them), so a package templates and tokenizes the way the
 * Hugging Face stack does, from tokenizer.json and tokenizer_config.json alone, without
 * transformers.js's model download and caching logic, which a provider must not have (every byte it
 * runs comes from the content-addressed package).
 */

/** What templating, tokenizing and detokenizing one package needs, loaded once. */
export type LlmTokenizer = {
  readonly tokenizer: Tokenizer;
  /** Absent: the model only completes raw prompts. */
  readonly template: Template | undefined;
  /** What the template may use besides the messages (bos_token, eos_token…). */
  readonly specialTokens: Readonly<Record<string, string>>;
  /** Ids that decoding skips (`skip_special_tokens`). */
  readonly specialIds: ReadonlySet<number>;
  /**
   * Byte-level BPE without clean-up (Qwen, Llama 3, GPT-2): a token's text is its bytes, so text
   * can be streamed byte-exactly. Otherwise text is re-decoded as a whole (slower, same result).
   */
  readonly byteLevel: boolean;
  /** The bytes of a token as output text (special tokens: their content), cached. */
  bytesOf(id: number): Uint8Array;
  /** Whether the token is an added, non-special token (decoded as its content, not as bytes). */
  isAdded(id: number): boolean;
};

const utf8 = new TextEncoder();

/**
 * Loaded tokenizers by the content ids of the files they come from: packages that share them (a
 * model and its quantized copy, several engines of one verifier) share one (a Qwen3 tokenizer is
 * ~0.5 s to load and some 100 MB of heap).
 */
const loadedTokenizers = new Map<string, LlmTokenizer>();
const MAX_LOADED_TOKENIZERS = 8;

/** Loads the tokenizer and chat template a package names (manifest `llm`), or reuses a loaded one. */
export function loadTokenizer(pkg: ModelPackage): LlmTokenizer {
  const manifest = pkg.manifest as LlmManifest;
  const cid = (path: string | undefined) => manifest.files.find((f) => f.path === path)?.cid ?? '';
  const { llm } = manifest;
  const key = [llm.tokenizer, llm.tokenizerConfig, llm.chatTemplate ?? '']
    .map((p) => `${p}=${cid(p)}`)
    .join(' ');
  const cached = loadedTokenizers.get(key);
  if (cached) return cached;
  const tok = readTokenizer(pkg, manifest);
  loadedTokenizers.set(key, tok);
  if (loadedTokenizers.size > MAX_LOADED_TOKENIZERS)
    loadedTokenizers.delete(loadedTokenizers.keys().next().value!);
  return tok;
}

function readTokenizer(pkg: ModelPackage, manifest: LlmManifest): LlmTokenizer {
  const tokenizerJson = readJson(pkg, manifest.llm.tokenizer, 'llm.tokenizer');
  const config = readJson(pkg, manifest.llm.tokenizerConfig, 'llm.tokenizerConfig');
  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(tokenizerJson, config);
  } catch (cause) {
    throw new GlassboxError('MODEL_INVALID', `cannot load the tokenizer: ${messageOf(cause)}`, {
      field: 'llm.tokenizer',
      cause,
    });
  }
  const added =
    (tokenizerJson as { added_tokens?: { id: number; content: string; special?: boolean }[] }).added_tokens ??
    [];
  const specialIds = new Set<number>();
  const addedIds = new Set<number>();
  for (const token of added) (token.special ? specialIds : addedIds).add(token.id);
  // tokenizers.js also skips tokens the config lists as additional special tokens
  for (const content of stringList((config as Record<string, unknown>)['additional_special_tokens'])) {
    const id = tokenizer.token_to_id(content);
    if (id !== undefined) {
      specialIds.add(id);
      addedIds.delete(id);
    }
  }
  const decoderType = (tokenizerJson as { decoder?: { type?: string } | null }).decoder?.type;
  const cleanUp = (config as { clean_up_tokenization_spaces?: boolean }).clean_up_tokenization_spaces ?? true;
  const byteLevel = decoderType === 'ByteLevel' && !cleanUp;
  const bytes = new Map<number, Uint8Array>();
  const bytesOf = (id: number): Uint8Array => {
    let b = bytes.get(id);
    if (!b) {
      const token = tokenizer.id_to_token(id) ?? '';
      b =
        specialIds.has(id) || addedIds.has(id) || !byteLevel
          ? utf8.encode(specialIds.has(id) || addedIds.has(id) ? token : tokenizer.decode([id]))
          : byteLevelBytes(token);
      bytes.set(id, b);
    }
    return b;
  };
  return {
    tokenizer,
    template: loadTemplate(pkg, manifest, config),
    specialTokens: specialTokensOf(config),
    specialIds,
    byteLevel,
    bytesOf,
    isAdded: (id) => addedIds.has(id),
  };
}

/**
 * Templates (chat) and tokenizes a prompt. A chat is rendered with `add_generation_prompt` and
 * tokenized without adding special tokens again (the template wrote them). A raw prompt is
 * tokenized as the tokenizer does by default (its post-processor adds a BOS where the model wants
 * one, as Hugging Face and vLLM do for completions; Qwen's adds nothing).
 */
export function promptTokens(tok: LlmTokenizer, prompt: LlmPrompt, modelName: string): PromptTokens {
  if (prompt.kind === 'completion') {
    if (typeof prompt.prompt !== 'string')
      throw new GlassboxError('REQUEST_INVALID', 'prompt must be a string', { field: 'prompt' });
    return { text: prompt.prompt, ids: tok.tokenizer.encode(prompt.prompt).ids };
  }
  if (!tok.template)
    throw new GlassboxError(
      'REQUEST_INVALID',
      `model ${modelName} has no chat template: send a raw prompt to /v1/completions`,
      { field: 'messages' },
    );
  checkMessages(prompt.messages);
  let text: string;
  try {
    text = tok.template.render({
      ...tok.specialTokens,
      messages: prompt.messages.map((m) => ({ role: m.role, content: m.content })),
      add_generation_prompt: true,
    });
  } catch (cause) {
    // a template may refuse a conversation (raise_exception), e.g. roles out of order
    throw new GlassboxError(
      'REQUEST_INVALID',
      `the chat template refused the messages: ${messageOf(cause)}`,
      {
        field: 'messages',
        cause,
      },
    );
  }
  return { text, ids: tok.tokenizer.encode(text, { add_special_tokens: false }).ids };
}

const ROLES = new Set<ChatMessage['role']>(['system', 'developer', 'user', 'assistant', 'tool']);

function checkMessages(messages: readonly ChatMessage[]): void {
  if (!Array.isArray(messages) || messages.length === 0)
    throw new GlassboxError('REQUEST_INVALID', 'messages must be a non-empty array', { field: 'messages' });
  messages.forEach((m, i) => {
    if (typeof m !== 'object' || m === null || !ROLES.has(m.role))
      throw new GlassboxError(
        'REQUEST_INVALID',
        `messages[${i}].role must be one of ${[...ROLES].join(', ')}`,
        {
          field: `messages[${i}].role`,
        },
      );
    if (typeof m.content !== 'string')
      throw new GlassboxError('REQUEST_INVALID', `messages[${i}].content must be a string`, {
        field: `messages[${i}].content`,
      });
  });
}

/** The chat template: a `.jinja` file of the package, or tokenizer_config.json's `chat_template`. */
function loadTemplate(pkg: ModelPackage, manifest: LlmManifest, config: unknown): Template | undefined {
  const path = manifest.llm.chatTemplate;
  if (path === undefined) return undefined;
  let source: unknown;
  if (path === manifest.llm.tokenizerConfig) {
    source = (config as { chat_template?: unknown }).chat_template;
    // tokenizer_config.json may hold several named templates; the default one is for chats
    if (Array.isArray(source))
      source = (source as { name?: string; template?: string }[]).find((t) => t.name === 'default')?.template;
  } else {
    source = new TextDecoder().decode(fileOf(pkg, path, 'llm.chatTemplate'));
  }
  if (typeof source !== 'string' || source.length === 0)
    throw new GlassboxError('MODEL_INVALID', `${path} has no chat template`, { field: 'llm.chatTemplate' });
  try {
    return new Template(source);
  } catch (cause) {
    throw new GlassboxError('MODEL_INVALID', `the chat template does not parse: ${messageOf(cause)}`, {
      field: 'llm.chatTemplate',
      cause,
    });
  }
}

/** bos_token, eos_token… as strings (a config may give them as AddedToken objects). */
function specialTokensOf(config: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token']) {
    const value = (config as Record<string, unknown>)[key];
    const content =
      typeof value === 'string' ? value : (value as { content?: unknown } | null | undefined)?.content;
    if (typeof content === 'string') out[key] = content;
  }
  return out;
}

function stringList(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

export function fileOf(pkg: ModelPackage, path: string, field: string): Uint8Array {
  const bytes = pkg.files.get(path);
  if (!bytes)
    throw new GlassboxError('MODEL_INVALID', `the package has no file ${path}`, { field, details: { path } });
  return bytes;
}

export function readJson(pkg: ModelPackage, path: string, field: string): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(fileOf(pkg, path, field)));
  } catch (cause) {
    if (cause instanceof GlassboxError) throw cause;
    throw new GlassboxError('MODEL_INVALID', `${path} is not valid JSON: ${messageOf(cause)}`, {
      field,
      cause,
    });
  }
}

/** GPT-2's byte-to-unicode table reversed: the byte each character of a byte-level token stands for. */
const UNICODE_TO_BYTE: ReadonlyMap<number, number> = (() => {
  const printable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const map = new Map<number, number>();
  let next = 256;
  for (let b = 0; b < 256; b++) map.set(printable(b) ? b : next++, b);
  return map;
})();

function byteLevelBytes(token: string): Uint8Array {
  const out = new Uint8Array(token.length);
  let n = 0;
  for (const char of token) {
    const b = UNICODE_TO_BYTE.get(char.codePointAt(0)!);
    // a character outside the table is not a byte-level token: keep its UTF-8 (never seen in practice)
    if (b === undefined) return utf8.encode(token);
    out[n++] = b;
  }
  return out.subarray(0, n);
}

function messageOf(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0]!;
}
