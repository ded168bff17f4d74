import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { chatCompletionRequestSchema, completionRequestSchema } from '../../src/api/openai.js';
import { parseWire } from '../../src/protocol/api.js';
import { GlassboxError } from '../../src/protocol/errors.js';

/** The field a refused body names, and its message. */
function refusal(schema: z.ZodType, body: unknown) {
  try {
    parseWire(schema, body, 'body');
  } catch (error) {
    expect(error).toBeInstanceOf(GlassboxError);
    const e = error as GlassboxError;
    return { field: e.field, message: e.shortMessage };
  }
  throw new Error('the body was accepted');
}

const chat = (over: Record<string, unknown> = {}) => ({
  model: 'tiny-chat',
  messages: [{ role: 'user', content: 'hi' }],
  ...over,
});

describe('OpenAI request schemas', () => {
  it("take OpenAI's chat request: string or text-part content, every role, the sampler, stop", () => {
    const body = chatCompletionRequestSchema.parse(
      chat({
        messages: [
          { role: 'system', content: 'be brief' },
          {
            role: 'developer',
            content: [
              { type: 'text', text: 'a' },
              { type: 'text', text: 'b' },
            ],
          },
          { role: 'user', content: 'hi', name: 'ann' },
          { role: 'assistant', content: null },
          { role: 'tool', content: 'result' },
        ],
        temperature: 0.7,
        top_p: 0.9,
        top_k: 40,
        seed: 42,
        stop: ['\n', 'END'],
        max_completion_tokens: 16,
        logprobs: true,
        top_logprobs: 20,
        n: 1,
        stream: true,
        stream_options: { include_usage: true },
        tools: [],
        tool_choice: 'none',
        response_format: { type: 'text' },
      }),
    );
    expect(body.messages).toHaveLength(5);
    expect(body.seed).toBe(42);
  });

  it('ignore fields they do not know, as vLLM does', () => {
    const body = chatCompletionRequestSchema.parse(chat({ reasoning_effort: 'low', metadata: { a: 1 } }));
    expect(body).not.toHaveProperty('reasoning_effort');
  });

  it('name the field of a refused request', () => {
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [chat({ messages: 'hi' }), 'body.messages', /array of messages/],
      [chat({ messages: [{ role: 'robot', content: 'x' }] }), 'body.messages.0.role', /not one of/],
      [chat({ messages: [{ role: 'user', content: 7 }] }), 'body.messages.0.content', /string or an array/],
      [chat({ messages: [{ role: 'user' }] }), 'body.messages.0.content', /required/],
      [chat({ messages: [] }), 'body.messages', /empty/],
      [chat({ n: 2 }), 'body.n', /only n = 1/],
      [
        chat({ tools: [{ type: 'function', function: { name: 'f' } }] }),
        'body.tools',
        /tool calling is not served/,
      ],
      [chat({ tools: [{ type: 'web_search' }] }), 'body.tools.0.type', /unknown tool type "web_search"/],
      [chat({ tool_choice: 'auto' }), 'body.tool_choice', /not served/],
      [chat({ response_format: { type: 'json_object' } }), 'body.response_format.type', /only "text"/],
      [chat({ stop: ['a', 'b', 'c', 'd', 'e'] }), 'body.stop', /up to 4|more than 4/],
      [chat({ top_logprobs: 21, logprobs: true }), 'body.top_logprobs', /at most 20/],
      [chat({ top_logprobs: 2 }), 'body.top_logprobs', /needs logprobs/],
      [chat({ temperature: 3 }), 'body.temperature', /at most 2/],
      [chat({ top_p: 0 }), 'body.top_p', /above 0/],
      [chat({ max_tokens: 0 }), 'body.max_tokens', /at least 1/],
      [chat({ seed: -1 }), 'body.seed', /at least 0/],
      [chat({ frequency_penalty: 0.5 }), 'body.frequency_penalty', /not served/],
      [chat({ model: undefined }), 'body.model', /required/],
    ];
    for (const [body, field, message] of cases) {
      const r = refusal(chatCompletionRequestSchema, body);
      expect(r.field, JSON.stringify(body)).toBe(field);
      expect(r.message).toMatch(message);
    }
  });

  it('completions: one string prompt, legacy logprobs up to 5, no echo', () => {
    expect(completionRequestSchema.parse({ model: 'm', prompt: ['once'], logprobs: 5 }).prompt).toEqual([
      'once',
    ]);
    expect(refusal(completionRequestSchema, { model: 'm', prompt: [1, 2] }).field).toBe('body.prompt');
    expect(refusal(completionRequestSchema, { model: 'm', prompt: 'x', logprobs: 6 }).field).toBe(
      'body.logprobs',
    );
    expect(refusal(completionRequestSchema, { model: 'm', prompt: 'x', echo: true }).field).toBe('body.echo');
  });
});
