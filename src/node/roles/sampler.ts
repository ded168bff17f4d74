import { getAddress, type Address, type Hex } from 'viem';
import {
  challengeAvailability,
  challengeBatch,
  findChallenge,
  getChallenge,
  getEligibleVoters,
  getProvider,
  getPublishedData,
  isContractRevert,
  isRuntimeAdmitted,
  openChallenge,
  reportUnadmittedRuntime,
  type ChainParams,
  type DivergenceProof,
  type TokenClaim,
} from '../../chain/index.js';
import type { BatchListing, EvidenceResponse, ParsedStoredReceipt } from '../../protocol/api.js';
import { dataHash } from '../../protocol/data.js';
import { DEFAULT_SAMPLING, samplingPlan } from '../../protocol/economics.js';
import { isGlassboxError } from '../../protocol/errors.js';
import { batchTree } from '../../protocol/merkle.js';
import { receiptHash, signedReceiptToJson, type Receipt } from '../../protocol/receipt.js';
import type { Engines } from '../../runtime/registry.js';
import type { Startable } from '../worker.js';
import { drawWhenDue, settleWhenDue } from './challenges.js';
import { isSampled, recheck, type Recheck } from './check.js';
import { addressOf, eachGuarded, roleWorker, type ModelSource, type RoleComponents } from './components.js';
import type { ProviderFetches } from './providers.js';
import type { OpenedChallenge, PendingBatch, Sample, SampleOutcome } from './store.js';

/*
 * The verifier (docs/architecture.md; docs/protocol.md, Sampling and disputes: "verifiers sample committed receipts, fetch the inputs, re-execute,
 * challenge on mismatch"): it reads new BatchCommitted events; once the block after a commit
 * exists, it fetches the batch from its provider, checks it against the committed root, samples
 * each receipt (see `isSampled`), re-executes the sampled ones and challenges a mismatch (naming
 * the first divergent trace step when it can). A sampled receipt whose inputs the provider has not
 * served within `dataDeadlineMs` gets an availability challenge. It draws, settles and follows up
 * its challenges when they are due, and serves the evidence of its challenges to their committees.
 *
 * All state is in the role store (SQLite); the chain is the source of truth for what was done.
 */

export type SamplerInit = {
  readonly sampleRate: number;
  readonly dataDeadlineMs: number;
  readonly pollIntervalMs: number;
  /** This node's URL, where it serves challenge evidence (GET /v1/evidence/:hash). */
  readonly url: string;
};

export type SamplerComponents = RoleComponents & {
  /** The engines it re-executes with, by the model's format. */
  readonly engines: Engines;
  readonly models: ModelSource;
  readonly providers: ProviderFetches;
};

export type SamplerStatus = {
  readonly sampleRate: number;
  readonly batchesSeen: number;
  readonly sampled: number;
  readonly outcomes: Readonly<Record<SampleOutcome, number>>;
  /** Time spent re-executing, ms. */
  readonly computeMs: number;
  readonly challenges: readonly (Omit<OpenedChallenge, 'challengeId' | 'batch'> & {
    challengeId: string;
    batchId?: string;
  })[];
  readonly samples: readonly (Omit<Sample, 'batchId' | 'challengeId'> & {
    batchId: string;
    challengeId?: string;
  })[];
};

export type Sampler = Startable & {
  /** One pass now (or right after the one in flight); a failure is logged, never thrown. */
  tick(): Promise<void>;
  status(): SamplerStatus;
  /** What this node serves the committee of its challenge of the receipt with this struct hash. */
  evidence(receiptHash: string): EvidenceResponse | undefined;
};

export const sampler =
  (init: SamplerInit) =>
  (c: SamplerComponents): Sampler => {
    const { chain, serial, log, events, store, engines, providers } = c;
    const me = addressOf(chain);
    const base64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
    const unbase64 = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));

    async function scanBatches(): Promise<void> {
      await events.follow(
        'batches',
        { contract: 'receiptLedger', eventName: 'BatchCommitted' },
        async ({ events: committed }) => {
          for (const e of committed) {
            const provider = getAddress(e.args.provider);
            if (provider !== me)
              store.addBatch(
                { ...e.args, provider, count: Number(e.args.count), block: e.blockNumber },
                Date.now(),
              );
          }
        },
      );
    }

    /**
     * The batch's listing as its provider serves it, or undefined when it isn't served, or is
     * served malformed, too large or for another batch: then the data deadline decides.
     */
    async function fetchBatch(batch: PendingBatch, endpoint: string): Promise<BatchListing | undefined> {
      try {
        return await providers.batchListing(endpoint, batch);
      } catch (error) {
        log.debug({ err: error, batchId: batch.batchId.toString() }, 'batch not served (yet)');
        return undefined;
      }
    }

    async function checkBatches(): Promise<void> {
      const latest = await chain.publicClient.getBlockNumber();
      // one batch that fails (an RPC hiccup, a provider gone) must not hold up the others
      await eachGuarded(
        log,
        store.pendingBatches().filter((b) => latest > b.block), // the block deciding the sample is there
        (batch) => ({ batchId: batch.batchId.toString() }),
        'checking a batch failed; retrying',
        checkBatch,
      );
    }

    /**
     * Opens a challenge unless the chain already has one of this kind on this key that is not void
     * (another verifier was first: two verifiers may draw the same receipt). Returns the challenge
     * id, ours or theirs.
     */
    async function challengeOnce(
      what:
        | { kind: 'wrong' | 'unavailable'; receiptHash: Hex }
        | { kind: 'unavailable-batch'; batchId: bigint; root: Hex },
      provider: Address,
      open: () => Promise<{ challengeId: bigint }>,
      extra: Pick<OpenedChallenge, 'step' | 'batch'> = { step: undefined },
    ): Promise<bigint> {
      const record = (challengeId: bigint) =>
        store.addChallenge({
          challengeId,
          kind: what.kind,
          receiptHash: 'receiptHash' in what ? what.receiptHash : what.root,
          provider,
          openedAt: Date.now(),
          ...extra,
        });
      const existing = await findChallenge(chain, what);
      // the contract's rule: an open or upheld challenge of a receipt blocks another; for
      // availability, any earlier one (answered, its data is public; upheld, it was slashed)
      const status = existing === undefined ? undefined : (await getChallenge(chain, existing)).status;
      if (existing !== undefined && (what.kind !== 'wrong' || status === 'open' || status === 'upheld')) {
        // Someone was first (another verifier, or the provider's own puppet answering at once):
        // follow theirs like ours, so its outcome (a slash, or data published on chain) is acted on.
        record(existing);
        return existing;
      }
      let challengeId: bigint;
      try {
        ({ challengeId } = await serial(open));
      } catch (error) {
        // Someone opened theirs between our look and our send; the revert names it: follow it too.
        if (!isContractRevert(error, 'AlreadyChallenged')) throw error;
        const [, blocking] = error.args;
        record(blocking);
        return blocking;
      }
      record(challengeId);
      log.warn(
        { challengeId: challengeId.toString(), provider, kind: what.kind, step: extra.step },
        'challenge opened',
      );
      return challengeId;
    }

    async function checkBatch(batch: PendingBatch): Promise<void> {
      const late = Date.now() - batch.seenAt > init.dataDeadlineMs;
      const { hash: blockHash } = await chain.publicClient.getBlock({ blockNumber: batch.block + 1n });
      const { endpoint } = await getProvider(chain, batch.provider);
      const receipts = (await fetchBatch(batch, endpoint))?.receipts;
      const tree = receipts?.length
        ? batchTree(receipts.map((r) => receiptHash(r.receipt.receipt)))
        : undefined;
      if (!receipts || !tree || tree.root !== batch.root || receipts.length !== batch.count) {
        if (late) await withheldBatch(batch, blockHash!);
        return;
      }
      const listed = tree; // narrowed for checkReceipt
      let waiting = false;
      let withheld = false; // one availability challenge per batch is enough to slash
      for (const [index, r] of receipts.entries()) {
        const hash = receiptHash(r.receipt.receipt);
        if (store.getSample(hash)) continue;
        // a receipt that can't be checked now (an RPC hiccup) keeps the batch pending; the others go on
        const done = await checkReceipt(r, index, hash).catch((error: unknown) => {
          log.error({ err: error, receiptHash: hash }, 'checking a receipt failed; retrying');
          return 'waiting' as const;
        });
        waiting ||= done === 'waiting';
      }
      if (!waiting) store.finishBatch(batch.batchId);

      async function checkReceipt(
        r: ParsedStoredReceipt,
        index: number,
        hash: Hex,
      ): Promise<'done' | 'waiting'> {
        const record = sampleRecorder(batch, hash);
        const proof = listed.proof(index);
        // A receipt under a runtime nobody was admitted to run can't be checked: slashable on sight.
        if (!(await runtimeAdmitted(r.receipt.receipt.runtime))) {
          await reportRuntime(r.receipt.receipt, { id: batch.batchId, proof }, record);
          return 'done';
        }
        const inputs = r.inputs === undefined ? undefined : unbase64(r.inputs);
        const served = inputs !== undefined && dataHash(inputs) === r.receipt.receipt.inputHash;
        // Availability is checked for every receipt (fetching is cheap); re-execution only for a sample.
        const sampled = isSampled({
          blockHash: blockHash!,
          receiptHash: hash,
          verifier: me,
          p: init.sampleRate,
        });
        if ((served || withheld) && !sampled) return 'done';
        if (!served) {
          if (!late) return 'waiting';
          withheld = true;
          const challengeId = await challengeData(batch, hash, proof);
          record('unavailable', 'inputs not served in time', { challengeId });
          return 'done';
        }
        const outputs = r.outputs === undefined ? undefined : unbase64(r.outputs);
        const found = await recheck({
          receipt: r.receipt.receipt,
          inputs,
          ...(outputs ? { outputs } : {}),
          ...(r.trace ? { trace: r.trace } : {}),
          engines,
          pkg: await c.models(r.receipt.receipt.model, [endpoint]),
        });
        if (found.kind !== 'mismatch') {
          const { outcome, detail, computeMs } = sampleOf(found);
          record(outcome, detail, { computeMs });
          return 'done';
        }
        store.putEvidence(hash, { receipt: signedReceiptToJson(r.receipt), inputs, outputs });
        const challengeId = await challengeWrong(r.receipt.receipt, { id: batch.batchId, proof }, found);
        record('mismatch', found.detail, { computeMs: found.computeMs, challengeId });
        return 'done';
      }
    }

    /** Records what checking receipt `hash` of `batch` found (once per receipt). */
    function sampleRecorder(batch: Pick<PendingBatch, 'batchId' | 'provider'>, hash: Hex) {
      return (outcome: SampleOutcome, detail: string, extra: Partial<Sample> = {}) =>
        store.putSample({
          receiptHash: hash,
          batchId: batch.batchId,
          provider: batch.provider,
          outcome,
          detail,
          computeMs: 0,
          challengeId: undefined,
          at: Date.now(),
          ...extra,
        });
    }

    const admitted = new Set<Hex>();
    /** Whether the chain admitted this runtime profile (a yes is final: admissions are never undone). */
    async function runtimeAdmitted(runtime: Hex): Promise<boolean> {
      if (admitted.has(runtime)) return true;
      const yes = await isRuntimeAdmitted(chain, runtime);
      if (yes) admitted.add(runtime);
      return yes;
    }

    /** Reports a receipt under an unadmitted runtime (the chain slashes once per provider and runtime). */
    async function reportRuntime(
      receipt: Receipt,
      batch: { id: bigint; proof: readonly Hex[] },
      record: ReturnType<typeof sampleRecorder>,
    ): Promise<void> {
      try {
        const { slashed } = await serial(() =>
          reportUnadmittedRuntime(chain, { receipt, batchId: batch.id, proof: batch.proof }),
        );
        log.warn(
          { provider: receipt.provider, runtime: receipt.runtime, slashed: slashed.toString() },
          'unadmitted runtime reported',
        );
        record('mismatch', `runtime ${receipt.runtime} was never admitted: reported, ${slashed} slashed`);
      } catch (error) {
        if (!isGlassboxError(error, 'CHAIN_REVERTED')) throw error;
        // AlreadyReported (by us or another verifier for this provider and runtime), or past the window
        record('mismatch', `runtime ${receipt.runtime} was never admitted (${String(error.details.error)})`);
      }
    }

    /**
     * A batch whose list of receipts its provider does not serve: challenge the batch, so the
     * provider must publish the receipt hashes on chain. Once published, every receipt the sample
     * draws gets an availability challenge (its answer publishes the receipt, inputs and outputs,
     * which `followAnswer` re-executes), and the first one too when none is drawn, so that hiding
     * the list costs an answer on chain. Answered challenges refund the bond, so checking a
     * withheld batch costs the verifier gas, never its bond (audit H-4). The batch is done when the
     * batch challenge is upheld (slashed) or every receipt challenge is open.
     */
    async function withheldBatch(batch: PendingBatch, blockHash: Hex): Promise<void> {
      const answered = await events.findLatest({
        contract: 'disputeManager',
        eventName: 'BatchAnswered',
        args: { batchId: batch.batchId },
      });
      const published = answered && [...answered.args.receiptHashes];
      if (!published) {
        const challengeId = await challengeOnce(
          { kind: 'unavailable-batch', batchId: batch.batchId, root: batch.root },
          batch.provider,
          () => challengeBatch(chain, batch.batchId),
        );
        // slashed: nothing more to learn from this batch
        if ((await getChallenge(chain, challengeId)).status === 'upheld') store.finishBatch(batch.batchId);
        return;
      }
      const tree = batchTree(published);
      const drawn = published.flatMap((hash, index) =>
        isSampled({ blockHash, receiptHash: hash, verifier: me, p: init.sampleRate }) ? [index] : [],
      );
      for (const index of drawn.length > 0 ? drawn : [0]) {
        const hash = published[index]!;
        if (store.getSample(hash)) continue;
        const challengeId = await challengeData(batch, hash, tree.proof(index));
        sampleRecorder(batch, hash)('unavailable', 'receipts published only on chain; data not served', {
          challengeId,
        });
      }
      store.finishBatch(batch.batchId);
    }

    /**
     * Challenges a wrong receipt, naming the divergent step when there is one, or for a generation
     * the check that fails and its first position (a token challenge: the committee scores only
     * that prefix). A challenge the chain refuses (no eligible committee, a proof it rejects) is
     * not retried forever: the bisected form falls back to the plain one, and a refusal of that is
     * recorded with the sample.
     */
    async function challengeWrong(
      receipt: Receipt,
      batch: { id: bigint; proof: readonly Hex[] },
      found: { divergence?: DivergenceProof; token?: TokenClaim },
    ): Promise<bigint | undefined> {
      const { divergence, token } = found;
      const hash = receiptHash(receipt);
      // no voter judges this runtime (besides us and the accused): a challenge could only void
      const pool = await getEligibleVoters(chain, {
        runtime: receipt.runtime,
        exclude: [receipt.provider, me],
      });
      if (pool.length === 0) {
        log.error(
          { receiptHash: hash, runtime: receipt.runtime },
          'no committee could judge this receipt; not challenged',
        );
        return undefined;
      }
      const at = {
        receipt,
        batchId: batch.id,
        proof: batch.proof,
        inputsUri: `${init.url}/v1/evidence/${hash}`,
      };
      const open = (d: DivergenceProof | undefined) =>
        challengeOnce(
          { kind: 'wrong', receiptHash: hash },
          receipt.provider,
          () => openChallenge(chain, token ? { ...at, token } : { ...at, ...(d ? { divergence: d } : {}) }),
          { step: d?.step },
        );
      for (const d of divergence ? [divergence, undefined] : [undefined]) {
        try {
          return await open(d);
        } catch (error) {
          if (!isGlassboxError(error, 'CHAIN_REVERTED')) throw error;
          log.error(
            { err: error, receiptHash: hash, bisected: d !== undefined },
            'the chain refused the challenge',
          );
        }
      }
      return undefined;
    }

    /** Challenges the availability of a committed receipt, keeping where it sits for `followAnswer`. */
    function challengeData(batch: PendingBatch, hash: Hex, proof: Hex[]): Promise<bigint> {
      return challengeOnce(
        { kind: 'unavailable', receiptHash: hash },
        batch.provider,
        () =>
          challengeAvailability(chain, {
            provider: batch.provider,
            batchId: batch.batchId,
            receiptHash: hash,
            proof,
          }),
        { step: undefined, batch: { id: batch.batchId, proof } },
      );
    }

    /**
     * A provider that answered an availability challenge published the receipt, inputs and outputs
     * on chain (at once, or chunk by chunk): check them like any sampled receipt, or withholding
     * then answering would dodge every check.
     */
    async function followAnswer(challenge: OpenedChallenge): Promise<void> {
      const published = await getPublishedData(chain, challenge.challengeId);
      const where = challenge.batch;
      if (!published || !where) return;
      const { receipt, inputs, outputs } = published;
      const { endpoint } = await getProvider(chain, challenge.provider);
      const found = await recheck({
        receipt,
        inputs,
        outputs,
        engines,
        pkg: await c.models(receipt.model, [endpoint]),
      });
      const sample = (outcome: SampleOutcome, detail: string, computeMs: number, challengeId?: bigint) =>
        store.putSample({
          receiptHash: challenge.receiptHash,
          batchId: where.id,
          provider: challenge.provider,
          outcome,
          detail: `${detail} (data published on chain)`,
          computeMs,
          challengeId,
          at: Date.now(),
        });
      if (found.kind !== 'mismatch') {
        const { outcome, detail, computeMs } = sampleOf(found);
        return sample(outcome, detail, computeMs);
      }
      store.putEvidence(challenge.receiptHash, { receipt: undefined, inputs, outputs });
      const challengeId = await challengeWrong(receipt, where, { token: found.token });
      sample('mismatch', found.detail, found.computeMs, challengeId);
    }

    /** Draws, resolves and follows up the challenges this verifier opened or relies on. */
    async function settleOwn(): Promise<void> {
      await eachGuarded(
        log,
        store.challenges().filter((ch) => !ch.settled),
        (ch) => ({ challengeId: ch.challengeId.toString() }),
        'settling a challenge failed; retrying',
        async (ch) => {
          const info = await getChallenge(chain, ch.challengeId);
          await drawWhenDue(c, info);
          if (!(await settleWhenDue(c, info))) return;
          // the data was published on chain: check it like any sampled receipt
          if (ch.kind === 'unavailable' && info.status === 'answered') await followAnswer(ch);
          store.settleChallenge(ch.challengeId);
        },
      );
    }

    const worker = roleWorker(log, 'verifier', init.pollIntervalMs, async () => {
      await scanBatches();
      await checkBatches();
      await settleOwn();
    });

    return {
      start: () => worker.start(),
      stop: () => worker.stop(),
      tick: () => worker.run(),
      status() {
        const samples = store.samples();
        const outcomes: Record<SampleOutcome, number> = { match: 0, mismatch: 0, unavailable: 0, skipped: 0 };
        for (const s of samples) outcomes[s.outcome]++;
        return {
          sampleRate: init.sampleRate,
          batchesSeen: store.batchCount(),
          sampled: samples.length,
          outcomes,
          computeMs: samples.reduce((t, s) => t + s.computeMs, 0),
          challenges: store.challenges().map(({ batch, ...ch }) => ({
            ...ch,
            challengeId: ch.challengeId.toString(),
            ...(batch ? { batchId: batch.id.toString() } : {}),
          })),
          samples: samples.map(({ batchId, challengeId, ...s }) => ({
            ...s,
            batchId: batchId.toString(),
            ...(challengeId === undefined ? {} : { challengeId: challengeId.toString() }),
          })),
        };
      },
      evidence(hash) {
        const e = store.getEvidence(hash);
        return (
          e && {
            ...(e.receipt ? { receipt: e.receipt } : {}),
            inputs: base64(e.inputs),
            ...(e.outputs ? { outputs: base64(e.outputs) } : {}),
          }
        );
      },
    };
  };

/**
 * The sampling rate when the config sets none: samplingPlan (src/protocol/economics.ts) with the
 * chain's minimum stake and slash, two verifiers, and catching a provider that gives 100 wrong
 * answers in a window with probability 0.999. A rational provider prices above its compute cost,
 * so the highest price this node knows bounds what faking an answer saves.
 */
export function defaultSampleRate(
  params: Pick<ChainParams, 'minStake' | 'slashBps'>,
  prices: readonly bigint[],
): number {
  return samplingPlan({
    ...DEFAULT_SAMPLING,
    computeCost: prices.reduce((a, b) => (a > b ? a : b), 0n),
    stake: params.minStake,
    slashBps: params.slashBps,
  }).p;
}

/** How a re-execution that found no mismatch is recorded as a sample. */
function sampleOf(found: Exclude<Recheck, { kind: 'mismatch' }>): {
  outcome: SampleOutcome;
  detail: string;
  computeMs: number;
} {
  return found.kind === 'match'
    ? { outcome: 'match', detail: 'outputs agree', computeMs: found.computeMs }
    : { outcome: 'skipped', detail: found.detail, computeMs: 0 };
}
