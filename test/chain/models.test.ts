import { describe, expect, it } from 'vitest';
import { deprecateModel, getModel, registerModel, toModelDigest } from '../../src/chain/index.js';
import { modelDigest } from '../../src/protocol/manifest.js';
import { expectRevert, modelOf, useTestChain } from './support.js';

const chain = useTestChain();

describe('ModelRegistry', () => {
  it('registers a model under its digest with owner, manifest CID, metadata and policy flag', async () => {
    const model = modelOf('iris');
    await registerModel(chain().as(1), { model, exact: true, metadata: '{"name":"iris"}' });
    const record = await getModel(chain().as(0), model);
    expect(record).toEqual({
      digest: modelDigest(model),
      owner: chain().address(1),
      manifestCid: model,
      metadata: '{"name":"iris"}',
      exact: true,
      deprecated: false,
      previous: undefined,
    });
    expect(await getModel(chain().as(0), toModelDigest(model))).toEqual(record); // by digest too
    expect(await getModel(chain().as(0), modelOf('unknown'))).toBeUndefined();
  });

  it('links a new version to the previous one, owned by the same account', async () => {
    const v1 = modelOf('v1');
    const v2 = modelOf('v2');
    await registerModel(chain().as(1), { model: v1, exact: false });
    await expectRevert(
      registerModel(chain().as(2), { model: v2, exact: false, previous: v1 }),
      'NotModelOwner',
    );
    await expectRevert(
      registerModel(chain().as(1), { model: v2, exact: false, previous: modelOf('nope') }),
      'UnknownModel',
    );
    await registerModel(chain().as(1), { model: v2, exact: false, previous: v1 });
    expect((await getModel(chain().as(0), v2))!.previous).toBe(modelDigest(v1));
    expect((await getModel(chain().as(0), v2))!.exact).toBe(false);
  });

  it('refuses a duplicate id, a zero id and an empty manifest CID', async () => {
    const model = modelOf('dup');
    await registerModel(chain().as(1), { model, exact: true });
    await expectRevert(registerModel(chain().as(2), { model, exact: true }), 'ModelExists');
    const zero = `0x${'0'.repeat(64)}` as const;
    await expectRevert(registerModel(chain().as(1), { model: zero, exact: true }), 'ZeroModelId');
    const registry = chain().deployment.contracts.modelRegistry;
    const { send } = await import('../../src/chain/client.js');
    const { ModelRegistryAbi } = await import('../../src/chain/artifacts/index.js');
    await expectRevert(
      send(chain().as(1), {
        address: registry,
        abi: ModelRegistryAbi,
        functionName: 'register',
        args: [toModelDigest(modelOf('x')), '', '', true, zero],
      }),
      'EmptyManifestCid',
    );
  });

  it('lets only the owner deprecate, once', async () => {
    const model = modelOf('old');
    await registerModel(chain().as(1), { model, exact: true });
    await expectRevert(deprecateModel(chain().as(2), model), 'NotModelOwner');
    await expectRevert(deprecateModel(chain().as(1), modelOf('ghost')), 'UnknownModel');
    await deprecateModel(chain().as(1), model);
    expect((await getModel(chain().as(0), model))!.deprecated).toBe(true);
    await expectRevert(deprecateModel(chain().as(1), model), 'AlreadyDeprecated');
  });
});
