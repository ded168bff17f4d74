import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeModel, initializer, node, valueInfo } from '../../examples/models/onnx-builder.mjs';
import { devnetClient, startDevnet, type Devnet } from '../../src/devnet/index.js';
import { closeClient, infer, type Client } from '../../src/sdk/index.js';
import { devnetCli } from '../support/devnet.js';
import { exampleDir } from '../support/examples.js';
import { failure } from '../support/wire.js';

/*
 * What a new user meets when things go wrong, against a devnet of three provider processes: a
 * quorum with providers down ends at once with what it has (issue 16, point 1), and a refusal
 * that is the request's own fault is reported as what it is, not retried on every provider and
 * blamed on the network (point 3).
 */
const MAX_PRICE = 10n ** 16n;
const BODY_LIMIT = 16 * 1024;
const TIMEOUT_MS = 60_000;
const dir = mkdtempSync(join(tmpdir(), 'glassbox-failures-'));

/** A model that reshapes its input into rows of 3: any length not divisible by 3 fails at run time. */
function writeRowsOfThree(folder: string): string {
  const bytes = encodeModel({
    name: 'rows-of-three',
    doc: 'reshapes x into rows of three values',
    opset: 17,
    inputs: [valueInfo('x', 'float32', [1, 'n'])],
    outputs: [valueInfo('y', 'float32', ['rows', 3])],
    initializers: [initializer('shape', 'int64', [2], [-1, 3])],
    nodes: [node('Reshape', ['x', 'shape'], ['y'])],
  });
  mkdirSync(folder, { recursive: true });
  writeFileSync(join(folder, 'model.onnx'), bytes);
  return folder;
}

let devnet: Devnet;
let client: Client;
let iris: string;
let rows: string;

beforeAll(async () => {
  devnet = await startDevnet({
    providers: 3,
    models: [exampleDir('iris'), writeRowsOfThree(join(dir, 'rows'))],
    nodeConfig: { logLevel: 'error', bodyLimitBytes: BODY_LIMIT },
  });
  client = await devnetClient(devnet, { discoveryTtlMs: 200 });
  iris = devnet.models[0]!.id;
  rows = devnet.models[1]!.id;
}, 120_000);

afterAll(async () => {
  if (client) await closeClient(client);
  await devnet?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const glassbox = (...argv: string[]) => devnetCli(devnet, ...argv);

const irisInputs = { features: [[6.3, 3.3, 6.0, 2.5]] };

describe("the request's own fault", () => {
  it('a run-time failure of the model is reported with its own message, confirmed by one more provider, not retried on all', async () => {
    const error = await failure(
      infer(client, {
        model: rows,
        inputs: { x: [[1, 2, 3, 4]] },
        maxPrice: MAX_PRICE,
        timeoutMs: TIMEOUT_MS,
      }),
    );
    expect(error.code).toBe('RUN_FAILED');
    expect(error.shortMessage).toMatch(/answered 422: .*cannot be reshaped to the requested shape/);
    const rejected = error.details.rejected as { provider: string; status: number }[];
    expect(rejected).toHaveLength(2);
    expect(rejected.every((r) => r.status === 422)).toBe(true);

    const cli = await glassbox('infer', rows, '--input', '{"x": [[1, 2, 3, 4]]}');
    expect(cli.code).toBe(1);
    expect(cli.err).toMatch(/^error: .*cannot be reshaped.* \[RUN_FAILED\]$/m);
    expect(cli.err).not.toMatch(/PROVIDER_UNAVAILABLE|could not be reached/);
  });

  it("a body over the providers' size limit is a 413 that names the limit, not an unreachable network", async () => {
    const x = [Array.from({ length: 3000 }, (_, i) => i / 7)]; // about 60 KB of JSON
    const error = await failure(infer(client, { model: rows, inputs: { x }, maxPrice: MAX_PRICE }));
    expect(error.code).toBe('REQUEST_TOO_LARGE');
    expect(error.shortMessage).toMatch(
      new RegExp(
        `refused the request: .*answered 413: .*larger than this provider accepts \\(${BODY_LIMIT} bytes\\)`,
      ),
    );
    const cli = await glassbox('infer', rows, '--input', JSON.stringify({ x }));
    expect(cli.code).toBe(1);
    expect(cli.err).toMatch(/^error: every provider .* \(16384 bytes\) \[REQUEST_TOO_LARGE\]$/m);
    expect(cli.err).toMatch(/^hint: send smaller inputs/m);
    // The same model answers an input within the limit.
    const small = await infer(client, { model: rows, inputs: { x: [[1, 2, 3]] }, maxPrice: MAX_PRICE });
    expect(small.report.ok).toBe(true);
  });
});

describe('a quorum with providers down', () => {
  it('returns the majority of k at once when one of three providers is down (SDK and CLI)', async () => {
    await devnet.providers[2]!.kill('SIGKILL');
    const started = performance.now();
    const result = await infer(client, {
      model: iris,
      inputs: irisInputs,
      maxPrice: MAX_PRICE,
      mode: { quorum: 3 },
      timeoutMs: TIMEOUT_MS,
    });
    expect(performance.now() - started).toBeLessThan(TIMEOUT_MS / 2); // it did not wait for the deadline
    expect(result.report.quorum).toMatchObject({ k: 3, majority: 2, answered: 2 });
    expect(result.report.rejected.map((r) => r.provider)).toEqual([devnet.providers[2]!.address]);
    expect(result.report.rejected[0]!.code).toBe('PROVIDER_UNAVAILABLE');

    const cli = await glassbox('infer', iris, '--input', JSON.stringify(irisInputs), '--quorum', '3');
    expect(cli.code).toBe(0);
    expect(cli.out).toMatch(/^mode\s+quorum 3: 2 of 3 agree, 1 did not answer$/m);
    expect(cli.out).toMatch(/^class\s+virginica$/m);
    expect(cli.out).toContain(`not used: ${devnet.providers[2]!.address} PROVIDER_UNAVAILABLE`);
  });

  it('ends at once with an error naming who was unreachable when no majority can be reached (SDK and CLI)', async () => {
    await devnet.providers[1]!.kill('SIGKILL');
    const started = performance.now();
    const error = await failure(
      infer(client, {
        model: iris,
        inputs: irisInputs,
        maxPrice: MAX_PRICE,
        mode: { quorum: 3 },
        timeoutMs: TIMEOUT_MS,
      }),
    );
    expect(performance.now() - started).toBeLessThan(TIMEOUT_MS / 2);
    expect(error.code).toBe('PROVIDER_UNAVAILABLE');
    expect(error.shortMessage).toMatch(/^quorum 3 for model .*: 1 verified answer\(s\); a majority needs 2$/);
    const lines = error.metaMessages.join('\n');
    expect(lines).toContain(`${devnet.providers[0]!.address}: answered, verified`);
    for (const down of [1, 2])
      expect(lines).toContain(`${devnet.providers[down]!.address}: PROVIDER_UNAVAILABLE`);

    const cli = await glassbox('infer', iris, '--input', JSON.stringify(irisInputs), '--quorum', '3');
    expect(cli.code).toBe(1);
    expect(cli.err).toMatch(/^error: quorum 3 for model .* a majority needs 2 \[PROVIDER_UNAVAILABLE\]$/m);
    expect(cli.err).toContain(`${devnet.providers[1]!.address}: PROVIDER_UNAVAILABLE`);
  });
});
