import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { toHex, type Hex } from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { inputsFromJson } from '../../protocol/inputs.js';
import { modelDigest } from '../../protocol/manifest.js';
import { recoverReceiptSigner, receiptHash, signReceipt, ZERO_HASH } from '../../protocol/receipt.js';
import { defaultEngines } from '../../runtime/index.js';
import { loadModel } from '../../store/index.js';
import { printFields } from '../io.js';
import { openStore, packFromPath } from '../models.js';
import { commonOptions, globals } from '../options.js';
import { runNetworkDemo } from './network-demo.js';
import type { Context } from '../program.js';

/** The example model builder ships beside src/ and dist/ alike: three folders up from this file. */
const EXAMPLES = new URL('../../../examples/models/build.mjs', import.meta.url);

type ExampleBuilder = {
  buildExampleModels(): Record<string, { dir: string; samples: string }>;
};

export function registerDemoCommand(program: Command, ctx: Context): void {
  commonOptions(program.command('demo'))
    .description(
      'what npm start runs: a local network, a published model, verified answers, batches on chain and payment',
    )
    .option(
      '--local',
      'only the offline part: pack the sample models, run them, show the hashes that make a result checkable',
      false,
    )
    .action(async (options: { local: boolean }, command: Command) => {
      if (!options.local) return runNetworkDemo(ctx);
      const { io } = ctx;
      const storeDir = globals(command).store;
      const store = openStore(storeDir);
      const { buildExampleModels } = (await import(EXAMPLES.href)) as ExampleBuilder;
      const examples = buildExampleModels();
      const oneThread = defaultEngines({ onnx: { intraOpNumThreads: 1 } });
      const twoThreads = defaultEngines({ onnx: { intraOpNumThreads: 2 } });
      const profiles = new Set<string>();
      try {
        io.out('Glassbox local demo: content-addressed models, a pinned runtime, canonical hashes.\n');
        for (const [name, example] of Object.entries(examples)) {
          const { id } = await packFromPath(store, example.dir, {});
          const pkg = await loadModel(store, id);
          const inputs = inputsFromJson(
            pkg.manifest.inputs,
            JSON.parse(await readFile(example.samples, 'utf8')),
          );
          const engine = oneThread.for(pkg, { trace: true });
          profiles.add(JSON.stringify(engine.profile));
          const result = await engine.run(pkg, inputs, { trace: true });
          // The same answer, bit for bit, however often and on however many threads it runs.
          const hashes = new Set<string>();
          for (let i = 0; i < 10; i++) {
            hashes.add((await engine.run(pkg, inputs)).outputHash);
            hashes.add((await twoThreads.for(pkg).run(pkg, inputs)).outputHash);
          }
          io.out(`== ${name}: ${pkg.manifest.description.split('. ')[0]}.`);
          printFields(io, [
            ['model id', id],
            ['policy', JSON.stringify(pkg.manifest.policy)],
            ...Object.entries(result.outputs).map(([k, t]): [string, string] => [
              `output ${k}`,
              `${t.dtype}[${t.shape.join(',')}] ${summarise(Array.from(t.data as ArrayLike<number | bigint | string>))}`,
            ]),
            ['inputHash', result.inputHash],
            ['outputHash', result.outputHash],
            ['runtime', result.runtime],
            ['traceRoot', `${result.trace!.root} over ${result.trace!.steps.length} intermediate tensors`],
            [
              'repeatable',
              `${hashes.size === 1 && hashes.has(result.outputHash) ? 'yes' : 'NO'}: 20 more runs on 1 and 2 threads gave ${hashes.size} distinct outputHash`,
            ],
          ]);
          io.out('');
          if (name === 'iris') await showReceipt(ctx, pkg.id, result);
        }
        for (const profile of profiles) io.out(`Profile: ${profile}`);
        io.out(
          `Store: ${storeDir}. Try: glassbox model inspect <model id>, glassbox run <model id> --input <json>.`,
        );
      } finally {
        await oneThread.close();
        await twoThreads.close();
      }
    });
}

/** What a provider will sign for this answer; here with a throwaway key and no chain yet. */
async function showReceipt(
  ctx: Context,
  id: string,
  result: { inputHash: Hex; outputHash: Hex; runtime: Hex; trace?: { root: Hex } },
) {
  const provider = privateKeyToAccount(generatePrivateKey());
  const client = privateKeyToAccount(generatePrivateKey());
  const domain = { chainId: 31337, verifyingContract: '0x0000000000000000000000000000000000000000' as const };
  const signed = await signReceipt(
    provider,
    {
      requestId: toHex(randomBytes(32)),
      provider: provider.address,
      client: client.address,
      model: modelDigest(id),
      inputHash: result.inputHash,
      outputHash: result.outputHash,
      paramsHash: ZERO_HASH,
      runtime: result.runtime,
      traceRoot: result.trace?.root ?? ZERO_HASH,
      price: 1000n,
      timestamp: BigInt(Date.now()),
    },
    domain,
  );
  ctx.io.out(
    'A receipt for this answer (EIP-712; signed here with a throwaway key, before any chain exists):',
  );
  printFields(ctx.io, [
    ['signer', provider.address],
    ['signature', signed.signature],
    [
      'recovers to',
      (await recoverReceiptSigner(signed, domain)) === provider.address ? 'the signer' : 'SOMEONE ELSE',
    ],
    ['struct hash', receiptHash(signed.receipt)],
  ]);
  ctx.io.out('');
}

function summarise(values: (number | bigint | string)[]): string {
  const shown = values.slice(0, 6).map((v) => (typeof v === 'number' ? Number(v.toPrecision(4)) : String(v)));
  return `[${shown.join(', ')}${values.length > 6 ? `, … ${values.length} values` : ''}]`;
}
