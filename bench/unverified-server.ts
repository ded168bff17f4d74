import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { BINARY_TYPE } from '../src/protocol/api.js';
import {
  decodeTensors,
  encodeTensorParts,
  tensorsFromJson,
  tensorsToJson,
} from '../src/protocol/encoding.js';
import type { TensorMap } from '../src/protocol/tensor.js';
import { createNodeFetch } from '../src/sdk/http.js';

/*
 * The unverified baseline (bench/unverified-server.mjs) as a reusable module: start it on a model
 * in its own process on loopback, ask it like a client would, stop it. Requests go through the
 * SDK's own fetch (node:http, kept-alive connections), and binary requests are streamed from the
 * encoding's parts like the SDK's, so the difference to a verified request is the verification.
 */

const SERVER = fileURLToPath(new URL('./unverified-server.mjs', import.meta.url));

export type UnverifiedServer = {
  readonly url: string;
  /** One inference: JSON or binary both ways; the outputs decoded. */
  infer(inputs: TensorMap, transport: 'json' | 'binary'): Promise<TensorMap>;
  stop(): Promise<void>;
};

export async function startUnverifiedServer(modelFile: string): Promise<UnverifiedServer> {
  const child = spawn(process.execPath, [SERVER, modelFile], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = once(child, 'exit');
  const [line] = (await Promise.race([
    once(child.stdout!, 'data'),
    exited.then(([code]) => {
      throw new Error(`the unverified server exited (${String(code)}) before it listened`);
    }),
  ])) as [Buffer];
  const url = `http://127.0.0.1:${Number(line.toString().trim())}/infer`;
  const post = createNodeFetch() ?? fetch;
  return {
    url,
    async infer(inputs, transport) {
      const init: RequestInit =
        transport === 'binary'
          ? ({
              method: 'POST',
              headers: { 'content-type': BINARY_TYPE, accept: BINARY_TYPE },
              body: new ReadableStream<Uint8Array>({
                start(controller) {
                  for (const part of encodeTensorParts(inputs).parts) controller.enqueue(part);
                  controller.close();
                },
              }),
              duplex: 'half',
            } as RequestInit)
          : {
              method: 'POST',
              headers: { 'content-type': 'application/json', accept: 'application/json' },
              body: JSON.stringify({ inputs: tensorsToJson(inputs) }),
            };
      const response = await post(url, init);
      if (!response.ok)
        throw new Error(`the unverified server answered ${response.status}: ${await response.text()}`);
      if (transport === 'binary') return decodeTensors(new Uint8Array(await response.arrayBuffer()));
      return tensorsFromJson(((await response.json()) as { outputs: unknown }).outputs, 'outputs');
    },
    async stop() {
      child.kill();
      await exited;
    },
  };
}
