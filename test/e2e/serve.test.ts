import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomMlpOnnx } from '../../examples/models/random-model.mjs';
import { devnetProfile } from '../../src/cli/commands/devnet.js';
import { writeDevnetProfile } from '../../src/cli/connection.js';
import { captureCli } from '../support/devnet.js';
import { devnetClient, startDevnet, type Devnet } from '../../src/devnet/index.js';
import { closeClient, infer, type Client } from '../../src/sdk/index.js';

/*
 * Serving your own model on a devnet, as a user does it (README, "Serve your own model"): a
 * `glassbox devnet` (its profile in $GLASSBOX_HOME, its providers reading the user's store), an ONNX
 * file nobody has seen, `model push --serve`, then a verified quorum-3 answer, from the CLI and the
 * SDK. No chain flags: the commands find the devnet, its store and its providers' tokens.
 */

const home = mkdtempSync(join(tmpdir(), 'glassbox-serve-e2e-'));
let devnet: Devnet;
let client: Client;
const fresh = join(home, 'fresh.onnx');
const input = JSON.stringify({ x: [[0.5, -1, 2, 0, 1.5, -0.25, 3, 1]] });

beforeAll(async () => {
  process.env.GLASSBOX_HOME = home;
  delete process.env.GLASSBOX_STORE;
  delete process.env.GLASSBOX_ADMIN_TOKEN;
  devnet = await startDevnet({
    providers: 3,
    store: join(home, 'store'),
    nodeConfig: { logLevel: 'error' },
  });
  await writeDevnetProfile(devnetProfile(devnet)); // what `glassbox devnet` writes
  client = await devnetClient(devnet);
  // A seed from the clock: a model the project, and these providers, have never seen.
  writeFileSync(fresh, randomMlpOnnx(Date.now() % 2 ** 31));
}, 120_000);

afterAll(async () => {
  if (client) await closeClient(client);
  await devnet?.stop();
  rmSync(home, { recursive: true, force: true });
});

const glassbox = (...argv: string[]) => captureCli(argv);

let freshId: string;
const ask = () =>
  infer(client, { model: freshId, inputs: JSON.parse(input), mode: { quorum: 3 }, maxPrice: 10n ** 16n });

describe('serve your own model on the devnet', () => {
  it('push --serve registers a never-seen float model (tolerance by default) and every provider offers it', async () => {
    const pushed = await glassbox('model', 'push', fresh, '--serve', '--json');
    expect(pushed.err).toBe('');
    const json = JSON.parse(pushed.out);
    freshId = json.id;
    expect(json).toMatchObject({
      registered: true,
      manifest: { name: 'fresh', version: '1', policy: { kind: 'tolerance', abs: 1e-5, rel: 1e-4 } },
    });
    expect(json.served.map((s: { url: string }) => s.url)).toEqual(devnet.providers.map((p) => p.url));
    expect(json.served.every((s: { price: string }) => s.price === '1000000000000000')).toBe(true);
    // the devnet's defaultInputPrice is for LLMs: a tensor model's input price is 0
    expect(json.served.every((s: { inputPrice: string }) => s.inputPrice === '0')).toBe(true);

    const providers = await glassbox('providers', freshId, '--json');
    expect(
      JSON.parse(providers.out)
        .map((r: { address: string }) => r.address)
        .sort(),
    ).toEqual(devnet.providers.map((p) => p.address).sort());
  });

  it('infer --quorum 3 on it gives a verified answer (CLI)', async () => {
    const answer = await glassbox('infer', freshId, '--input', input, '--quorum', '3');
    expect(answer.err).toBe('');
    expect(answer.code).toBe(0);
    expect(answer.out).toMatch(/^probabilities\s+float32\[1,4\]/m);
    expect(answer.out.match(/: verified \(price/g)).toHaveLength(3);
  });

  it('infer with quorum 3 on it gives a verified answer (SDK)', async () => {
    const result = await ask();
    expect(result.report).toMatchObject({ ok: true, mode: 'quorum', quorum: { k: 3, majority: 3 } });
    expect(new Set(result.providers).size).toBe(3);
  });

  it('a provider restarted keeps serving the added model', async () => {
    await devnet.providers[0]!.restart();
    const result = await ask();
    expect(result.report.ok).toBe(true);
    expect(result.providers).toContain(devnet.providers[0]!.address);
  });

  it("a node's admin API refuses a wrong token", async () => {
    const refused = await glassbox(
      'node',
      'offer',
      freshId,
      '--url',
      devnet.providers[1]!.url,
      '--token',
      'f'.repeat(64),
    );
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/^error: .*wrong admin token.* \[ADMIN_UNAUTHORIZED\]/);
  });
});

describe('model push and the store', () => {
  it('takes --policy, --name and --version; push <id> registers a stored model; providers says when nobody offers it', async () => {
    const packed = await glassbox(
      'model',
      'pack',
      fresh,
      '--name',
      'mine',
      '--version',
      '2',
      '--policy',
      'argmax:probabilities',
      '--json',
    );
    const { id, manifest } = JSON.parse(packed.out);
    expect(manifest).toMatchObject({ name: 'mine', version: '2', policy: { kind: 'argmax' } });

    const nobody = await glassbox('providers', id);
    expect(nobody.out).toMatch(
      new RegExp(`^no active provider offers model ${id}\nhint: it is not even registered`),
    );

    const pushed = await glassbox('model', 'push', id);
    expect(pushed.code).toBe(0);
    expect(pushed.out).toMatch(/^on chain\s+registered \(tx 0x/m);
    const again = await glassbox('providers', id);
    expect(again.out).toMatch(
      /^hint: on the devnet, `glassbox model push \S+ --serve` makes its providers offer it/m,
    );

    const flagsOnId = await glassbox('model', 'push', id, '--name', 'other');
    expect(flagsOnId.code).toBe(1);
    expect(flagsOnId.err).toMatch(/is a model id, a finished package/);

    const named = JSON.parse(
      (await glassbox('model', 'push', fresh, '--policy', 'exact', '--version', '3', '--json')).out,
    );
    expect(named).toMatchObject({ registered: true, manifest: { version: '3', policy: { kind: 'exact' } } });
  });

  it('model inspect and run know the ids the devnet printed', async () => {
    const iris = devnet.models.find((m) => m.name === 'iris')!.id;
    const inspected = await glassbox('model', 'inspect', iris);
    expect(inspected.code).toBe(0);
    expect(inspected.out).toMatch(/input features\s+float32\[batch,4\]/);
    const ran = await glassbox('run', iris, '--input', '{"features": [[6.3, 3.3, 6.0, 2.5]]}');
    expect(ran.code).toBe(0);
    expect(ran.out).toMatch(/^label\s+int64\[1\] \["2"\]/m);
  });
});
