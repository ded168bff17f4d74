import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/program.js';
import { llmOutputHash } from '../../src/protocol/llm.js';
import { exampleDir, llmExample } from '../support/examples.js';

/*
 * `glassbox run <llm> --prompt` and `glassbox chat --prompt` on the sample chat model: the text
 * streamed, the hashes a receipt would carry (recomputed here from the printed ids), the seed
 * disclosed, and the errors a user meets first.
 */

const store = mkdtempSync(join(tmpdir(), 'glassbox-cli-llm-'));
afterAll(() => rmSync(store, { recursive: true, force: true }));

async function glassbox(argv: string[], stream = false) {
  const out: string[] = [];
  const err: string[] = [];
  const written: string[] = [];
  const code = await runCli([...argv, '--store', store, '--threads', '1'], {
    out: (l) => out.push(l),
    err: (l) => err.push(l),
    ...(stream ? { write: (t: string) => written.push(t) } : {}),
  });
  return { code, out: out.join('\n'), err: err.join('\n'), written: written.join('') };
}

type Printed = {
  text: string;
  seed: string;
  outputIds: number[];
  outputHash: string;
  finishReason: string;
  completionTokens: number;
};

const { dir, pkg } = await llmExample('tiny-chat');

describe('glassbox run and chat with an LLM', () => {
  it('generates from --prompt, streams the text and prints the hashes its receipt would carry', async () => {
    const args = ['run', dir, '--prompt', 'Hello there', '--max-tokens', '12', '--seed', '42'];
    const json = await glassbox([...args, '--json']);
    expect(json.err).toBe('');
    expect(json.code).toBe(0);
    const printed = JSON.parse(json.out) as Printed;
    expect(printed.seed).toBe('42');
    expect(printed.finishReason).toBe('length');
    expect(printed.outputIds).toHaveLength(12);
    expect(printed.outputHash).toBe(llmOutputHash(printed.outputIds));

    // The same seed gives the same tokens, and the text streams as it is made.
    const streamed = await glassbox(args, true);
    expect(streamed.code).toBe(0);
    expect(streamed.written).toBe(`${printed.text}\n`);
    expect(streamed.out).toContain(printed.outputHash);
    expect(streamed.out).toContain('12 output');
  });

  it('picks and prints a seed when none is given; chat --prompt answers one turn, by folder or id', async () => {
    // a folder is packed into the store, after which its id names it
    const packed = await glassbox(['chat', dir, '--prompt', 'Hi', '--max-tokens', '4', '--json']);
    expect(packed.code).toBe(0);
    const byId = await glassbox(['chat', pkg.id, '--prompt', 'Hi', '--max-tokens', '4', '--json']);
    expect(byId.code).toBe(0);
    const printed = JSON.parse(packed.out) as Printed;
    expect(printed.seed).toMatch(/^\d+$/);
    expect(printed.completionTokens).toBe(4);
  });

  it('names what is wrong: no --prompt for an LLM, no --input for a tensor model, a bad flag', async () => {
    const noPrompt = await glassbox(['run', dir]);
    expect(noPrompt.code).toBe(1);
    expect(noPrompt.err).toMatch(/is an LLM: give it --prompt/);
    const noInput = await glassbox(['run', exampleDir('iris')]);
    expect(noInput.code).toBe(1);
    expect(noInput.err).toMatch(/give them with --input/);
    const badTemperature = await glassbox(['run', dir, '--prompt', 'x', '--temperature', '7']);
    expect(badTemperature.code).toBe(1);
    expect(badTemperature.err).toMatch(/temperature/);
    const overContext = await glassbox(['run', dir, '--prompt', 'x', '--max-tokens', '1000000000']);
    expect(overContext.code).toBe(1);
    expect(overContext.err).toMatch(/max_tokens/);
  });
});
