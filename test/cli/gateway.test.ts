import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevnet, type Devnet } from '../../src/devnet/index.js';
import { signedReceiptFromJson } from '../../src/protocol/receipt.js';
import { DEFAULT_OUT_DIR } from '../../examples/models/build.mjs';
import { devnetChainArgs, devnetCli } from '../support/devnet.js';

/*
 * The two commands over a real devnet (anvil, one provider process serving tiny-chat): `glassbox
 * gateway` as its own process, as a user runs it (prints its URL, answers an OpenAI chat with a
 * receipt, stops on SIGTERM and pays the provider), and `glassbox chat --prompt`, which goes over
 * the network when a chain is configured and prints the receipt and its checks.
 */

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

let devnet: Devnet;

beforeAll(async () => {
  devnet = await startDevnet({ providers: 1, models: [join(DEFAULT_OUT_DIR, 'tiny-chat')] });
}, 120_000);

afterAll(() => devnet?.stop());

describe('glassbox gateway', () => {
  it('prints its URL, answers a chat with a verified receipt, and on SIGTERM settles and exits 0', async () => {
    const args = ['gateway', '--port', '0', '--json', ...devnetChainArgs(devnet)];
    const child = spawn(process.execPath, [CLI, ...args, '--private-key', devnet.client.privateKey], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    try {
      const [line] = (await once(createInterface({ input: child.stdout }), 'line')) as [string];
      const { url } = JSON.parse(line) as { url: string };
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);
      const res = await fetch(`${url}/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'tiny-chat',
          messages: [{ role: 'user', content: 'Hi' }],
          max_tokens: 4,
          temperature: 0,
        }),
      });
      expect(res.status).toBe(200);
      expect(res.headers.get('x-glassbox-verified')).toBe('true');
      const answer = (await res.json()) as { glassbox: { receipts: unknown[] } };
      expect(answer.glassbox.receipts).toHaveLength(1);
      const receipt = signedReceiptFromJson(answer.glassbox.receipts[0] as never).receipt;
      expect(receipt.client).toBe(devnet.client.address);
      expect(receipt.provider).toBe(devnet.providers[0]!.address);

      child.kill('SIGTERM');
      const [code] = (await once(child, 'exit')) as [number | null];
      expect(code, stderr).toBe(0);
      expect(stderr).toContain(`to ${devnet.providers[0]!.address}: delivered`);
      expect(stderr).toContain('stopped; vouchers sent to 1 provider(s)');
    } finally {
      child.kill('SIGKILL');
    }
  }, 90_000);

  it('refuses a quorum of 1 and two modes at once, naming the flags', async () => {
    const quorum = await devnetCli(devnet, 'gateway', '--quorum', '1');
    expect(quorum.code).toBe(1);
    expect(quorum.err).toMatch(/--quorum 1: a quorum needs at least 2 providers/);
    const both = await devnetCli(devnet, 'gateway', '--quorum', '2', '--recheck', 'local');
    expect(both.err).toMatch(/--quorum and --recheck local/);
    const cap = await devnetCli(devnet, 'gateway', '--max-price-per-million', '5');
    expect(cap.err).toMatch(/--max-price-per-million 5 is not <input>,<output>/);
  });
});

describe('glassbox chat over the network', () => {
  it('--prompt: the answer from the devnet provider, its receipt and its checks', async () => {
    const { code, out, err } = await devnetCli(
      devnet,
      ...'chat tiny-chat --prompt Hi --max-tokens 4 --temperature 0'.split(' '),
    );
    expect(code, err).toBe(0);
    expect(out).toMatch(/^receipt 1\s+0x[0-9a-f]{64} by 0x[0-9a-fA-F]{40}, price /m);
    expect(out).toContain(devnet.providers[0]!.address);
    expect(out).toMatch(/^checks\s+ok: \d+ checks passed \(receipt\)/m);
    expect(out).toMatch(/^tokens\s+\d+ prompt, 4 output/m);
  });

  it('--json: the text, the ids and the receipt, the same ids as the provider signed', async () => {
    const { code, out } = await devnetCli(
      devnet,
      ...'chat tiny-chat --prompt Hi --max-tokens 3 --json'.split(' '),
    );
    expect(code).toBe(0);
    const printed = JSON.parse(out) as { outputIds: number[]; receipts: unknown[]; report: { ok: boolean } };
    expect(printed.outputIds).toHaveLength(3);
    expect(printed.receipts).toHaveLength(1);
    expect(printed.report.ok).toBe(true);
  });

  it('--local runs the model here even with a chain configured: the hashes, no receipt', async () => {
    const id = devnet.models[0]!.id;
    const argv = ['chat', id, '--local', '--prompt', 'Hi', '--max-tokens', '3', '--threads', '1'];
    const { code, out, err } = await devnetCli(devnet, ...argv, '--store', devnet.store);
    expect(code, err).toBe(0);
    expect(out).toMatch(/^outputHash\s+0x[0-9a-f]{64}$/m);
    expect(out).not.toMatch(/receipt/);
  });
});
