import type { Logger } from 'pino';
import { getAddress, type Address, type Hex } from 'viem';
import {
  answerAvailability,
  answerAvailabilityChunk,
  answerBatch,
  challengeAvailability,
  challengeBatch,
  commitVote,
  drawCommittee,
  getAvailabilityChallenges,
  getEligibleVoters,
  isRuntimeAdmitted,
  reportUnadmittedRuntime,
  getBatch,
  getBatchChallenges,
  getChallenge,
  getChallengedReceipt,
  getCommitteesDrawn,
  getEvents,
  getProvider,
  findChallenge,
  getPublishedBatch,
  getPublishedChunks,
  getPublishedData,
  getVote,
  isChunkPublished,
  openChallenge,
  revealVote,
  settleChallenge,
  type ChainParams,
  type ChallengeInfo,
  type DivergenceProof,
  type DataSide,
  type BatchCommitted,
  type ChallengeOpened,
  type GlassboxClient,
} from '../../chain/index.js';
import {
  parseEvidenceResponse,
  readBatchPages,
  type BatchListing,
  type EvidenceResponse,
  type ParsedStoredReceipt,
} from '../../protocol/api.js';
import { DEFAULT_MAX_RESPONSE_BYTES, readJsonBody } from '../../protocol/body.js';
import { chunkData, dataHash, ZERO_ROOT } from '../../protocol/data.js';
import { decodeTensors } from '../../protocol/encoding.js';
import { DEFAULT_SAMPLING, samplingPlan } from '../../protocol/economics.js';
import { isGlassboxError } from '../../protocol/errors.js';
import type { ModelPackage } from '../../protocol/manifest.js';
import { batchTree } from '../../protocol/merkle.js';
import {
  receiptHash,
  signedReceiptFromJson,
  signedReceiptToJson,
  type Receipt,
} from '../../protocol/receipt.js';
import type { TraceStepResult } from '../../runtime/engine.js';
import type { Engines } from '../../runtime/registry.js';
import type { NodeRole } from '../config.js';
import type { NodeDb } from '../db.js';
import type { Serial } from '../serial.js';
import { isSampled, recheck, runSafely, type Recheck } from './check.js';
import type { Duty, OpenedChallenge, PendingBatch, Sample, SampleOutcome, VerifierStore } from './store.js';

/*
 * The roles beside answering requests (DESIGN.md: "verifiers sample committed receipts, fetch the
 * inputs, re-execute, challenge on mismatch; disputes: a stake-weighted random committee
 * re-executes and votes"). One loop, every `pollIntervalMs`, does whatever the node's roles ask:
 *
 * - verifier: read new BatchCommitted events; once the block after a commit exists, fetch the
 *   batch from its provider, check it against the committed root, sample each receipt (see
 *   `isSampled`), re-execute the sampled ones and challenge a mismatch (naming the first divergent
 *   trace step when it can). A sampled receipt whose inputs the provider has not served within
 *   `dataDeadlineMs` gets an availability challenge. It settles its challenges when they are due.
 * - committee: read ChallengeOpened events naming this node; re-execute the challenged receipt
 *   from the challenger's evidence, then commit, reveal and resolve in time. The vote and its salt
 *   are stored before the commit is sent, and each step checks the chain first, so a member
 *   restarted at any point carries on where it stopped.
 * - provider: answer availability challenges against it by publishing the receipt and its data
 *   (at once, or chunk by chunk when larger than a chunk).
 *
 * All state is in the role store (SQLite); the chain is the source of truth for what was done.
 */

export type VerifierRoleParameters = {
  readonly roles: readonly NodeRole[];
  readonly chain: GlassboxClient;
  readonly engines: Engines;
  /**
   * The package of a model by its on-chain digest: one this node loaded, else fetched from
   * `peers` (GET /v1/blobs/:cid; every blob re-hashed). Undefined when nobody serves it.
   */
  readonly modelOf: (digest: Hex, peers: readonly string[]) => Promise<ModelPackage | undefined>;
  readonly db: NodeDb;
  readonly store: VerifierStore;
  readonly serial: Serial;
  readonly log: Logger;
  /** This node's URL, where it serves challenge evidence. */
  readonly url: () => string;
  readonly sampleRate: number;
  readonly dataDeadlineMs: number;
  readonly pollIntervalMs: number;
  /**
   * Whether the provider role answers availability challenges against it on chain (default: it
   * does). A provider that does not is slashed once a challenge runs out: tests build one.
   */
  readonly answersAvailability?: boolean;
};

export type VerifierStatus = {
  readonly roles: readonly NodeRole[];
  readonly address: Address;
  readonly verifier?: {
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
  readonly committee?: {
    readonly duties: readonly {
      challengeId: string;
      decision?: 'vote' | 'abstain';
      guilty?: boolean;
      detail?: string;
      computeMs: number;
      committed: boolean;
      revealed: boolean;
      settled: boolean;
    }[];
  };
};

export type VerifierRole = {
  /** One pass of every role's work (the loop calls it; tests may too). */
  tick(): Promise<void>;
  status(): VerifierStatus;
  evidence(receiptHash: string): EvidenceResponse | undefined;
  stop(): Promise<void>;
};

export function createVerifierRole(p: VerifierRoleParameters): VerifierRole {
  const me = getAddress(p.chain.walletClient!.account.address);
  const { store, log } = p;
  const has = (role: NodeRole) => p.roles.includes(role);
  const base64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
  const unbase64 = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));
  const tx = <T>(f: () => Promise<T>) => p.serial(f);

  /**
   * Runs `handle` over the blocks since the cursor `name` up to the latest, then moves the cursor
   * past them: a pass that fails leaves the cursor, so its events are handled again (every
   * handler is idempotent), never skipped.
   */
  async function sinceCursor(name: string, handle: (fromBlock: bigint, toBlock: bigint) => Promise<void>) {
    const latest = await p.chain.publicClient.getBlockNumber();
    const from = store.cursor(name) ?? p.chain.deployment.startBlock;
    if (latest < from) return;
    await handle(from, latest);
    store.setCursor(name, latest + 1n);
  }

  // ---- verifier ----

  function scanBatches(): Promise<void> {
    return sinceCursor('batches', async (fromBlock, toBlock) => {
      for (const e of await getEvents<BatchCommitted>(p.chain, {
        contract: 'receiptLedger',
        eventName: 'BatchCommitted',
        fromBlock,
        toBlock,
      }))
        if (getAddress(e.args.provider) !== me)
          store.addBatch(
            {
              ...e.args,
              provider: getAddress(e.args.provider),
              count: Number(e.args.count),
              block: e.blockNumber,
            },
            Date.now(),
          );
    });
  }

  /**
   * The batch's listing as its provider serves it, page by page (each validated against the
   * committed root and count), or undefined when it isn't served, or is served malformed, too
   * large or for another batch: then the data deadline decides.
   */
  async function fetchBatch(batch: PendingBatch, endpoint: string): Promise<BatchListing | undefined> {
    try {
      const from = `provider ${batch.provider}`;
      return await readBatchPages(batch, async (offset) => {
        const response = await fetch(
          `${endpoint.replace(/\/+$/, '')}/v1/batches/${batch.root}?offset=${offset}`,
          {
            signal: AbortSignal.timeout(5_000),
            redirect: 'error',
          },
        );
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        return readJsonBody(response, { maxBytes: DEFAULT_MAX_RESPONSE_BYTES, from });
      });
    } catch (error) {
      log.debug({ err: error, batchId: batch.batchId.toString() }, 'batch not served (yet)');
      return undefined;
    }
  }

  async function checkBatches(): Promise<void> {
    const latest = await p.chain.publicClient.getBlockNumber();
    // one batch that fails (an RPC hiccup, a provider gone) must not hold up the others
    await eachGuarded(
      store.pendingBatches().filter((b) => latest > b.block), // the block deciding the sample is there
      (batch) => ({ batchId: batch.batchId.toString() }),
      'checking a batch failed; retrying',
      checkBatch,
    );
  }

  /** Runs `work` on each item; one that throws is logged and holds up none of the others. */
  async function eachGuarded<T>(
    items: readonly T[],
    describe: (item: T) => object,
    message: string,
    work: (item: T) => Promise<void>,
  ): Promise<void> {
    for (const item of items)
      await work(item).catch((error: unknown) => log.error({ err: error, ...describe(item) }, message));
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
    const existing = await findChallenge(p.chain, what);
    // the contract's rule: an open or upheld challenge of a receipt blocks another; for
    // availability, any earlier one (answered, its data is public; upheld, it was slashed)
    const status = existing === undefined ? undefined : (await getChallenge(p.chain, existing)).status;
    if (existing !== undefined && (what.kind !== 'wrong' || status === 'open' || status === 'upheld')) {
      // Someone was first (another verifier, or the provider's own puppet answering at once):
      // follow theirs like ours, so its outcome (a slash, or data published on chain) is acted on.
      record(existing);
      return existing;
    }
    const { challengeId } = await tx(open);
    record(challengeId);
    log.warn(
      { challengeId: challengeId.toString(), provider, kind: what.kind, step: extra.step },
      'challenge opened',
    );
    return challengeId;
  }

  async function checkBatch(batch: PendingBatch): Promise<void> {
    const late = Date.now() - batch.seenAt > p.dataDeadlineMs;
    const { hash: blockHash } = await p.chain.publicClient.getBlock({ blockNumber: batch.block + 1n });
    const { endpoint } = await getProvider(p.chain, batch.provider);
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
      const sampled = isSampled({ blockHash: blockHash!, receiptHash: hash, verifier: me, p: p.sampleRate });
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
        engines: p.engines,
        pkg: await p.modelOf(r.receipt.receipt.model, [endpoint]),
      });
      if (found.kind !== 'mismatch') {
        const { outcome, detail, computeMs } = sampleOf(found);
        record(outcome, detail, { computeMs });
        return 'done';
      }
      store.putEvidence(hash, { receipt: signedReceiptToJson(r.receipt), inputs, outputs });
      const challengeId = await challengeWrong(
        r.receipt.receipt,
        { id: batch.batchId, proof },
        found.divergence,
      );
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
    const yes = await isRuntimeAdmitted(p.chain, runtime);
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
      const { slashed } = await tx(() =>
        reportUnadmittedRuntime(p.chain, { receipt, batchId: batch.id, proof: batch.proof }),
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
    const published = await getPublishedBatch(p.chain, batch.batchId);
    if (!published) {
      const challengeId = await challengeOnce(
        { kind: 'unavailable-batch', batchId: batch.batchId, root: batch.root },
        batch.provider,
        () => challengeBatch(p.chain, batch.batchId),
      );
      // slashed: nothing more to learn from this batch
      if ((await getChallenge(p.chain, challengeId)).status === 'upheld') store.finishBatch(batch.batchId);
      return;
    }
    const tree = batchTree(published);
    const drawn = published.flatMap((hash, index) =>
      isSampled({ blockHash, receiptHash: hash, verifier: me, p: p.sampleRate }) ? [index] : [],
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
   * Challenges a wrong receipt, naming the divergent step when there is one. A challenge the
   * chain refuses (no eligible committee, a proof it rejects) is not retried forever: the bisected
   * form falls back to the plain one, and a refusal of that is recorded with the sample.
   */
  async function challengeWrong(
    receipt: Receipt,
    batch: { id: bigint; proof: readonly Hex[] },
    divergence: DivergenceProof | undefined,
  ): Promise<bigint | undefined> {
    const hash = receiptHash(receipt);
    // no voter judges this runtime (besides us and the accused): a challenge could only void
    const pool = await getEligibleVoters(p.chain, {
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
    const open = (d: DivergenceProof | undefined) =>
      challengeOnce(
        { kind: 'wrong', receiptHash: hash },
        receipt.provider,
        () =>
          openChallenge(p.chain, {
            receipt,
            batchId: batch.id,
            proof: batch.proof,
            inputsUri: `${p.url()}/v1/evidence/${hash}`,
            ...(d ? { divergence: d } : {}),
          }),
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
        challengeAvailability(p.chain, {
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
  async function followAnswer(c: OpenedChallenge): Promise<void> {
    const published = await getPublishedData(p.chain, c.challengeId);
    if (!published || !c.batch) return;
    const { receipt, inputs, outputs } = published;
    const { endpoint } = await getProvider(p.chain, c.provider);
    const found = await recheck({
      receipt,
      inputs,
      outputs,
      engines: p.engines,
      pkg: await p.modelOf(receipt.model, [endpoint]),
    });
    const sample = (outcome: SampleOutcome, detail: string, computeMs: number, challengeId?: bigint) =>
      store.putSample({
        receiptHash: c.receiptHash,
        batchId: c.batch!.id,
        provider: c.provider,
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
    store.putEvidence(c.receiptHash, { receipt: undefined, inputs, outputs });
    const challengeId = await challengeWrong(receipt, c.batch, undefined);
    sample('mismatch', found.detail, found.computeMs, challengeId);
  }

  /**
   * Draws the committee of a challenge once its draw block is behind the latest (anyone may; the
   * challenger and the accused both do, so neither can stall it). True when nothing is left to do:
   * drawn, closed, or past the draw window (then it voids at its deadline).
   */
  async function drawWhenDue(info: ChallengeInfo): Promise<boolean> {
    if (info.kind !== 'wrong' || info.status !== 'open') return true;
    if (info.committee.length > 0) return true;
    // draws close halfway through the commit period (members get the rest); after, it voids
    if (Date.now() >= info.commitDeadlineMs - p.chain.deployment.params.commitPeriodMs / 2) return true;
    if ((await p.chain.publicClient.getBlockNumber()) <= info.drawBlock) return false;
    try {
      const { committee, deferred } = await tx(() => drawCommittee(p.chain, info.challengeId));
      log.info({ challengeId: info.challengeId.toString(), committee, deferred }, 'committee drawn');
      return !deferred;
    } catch (error) {
      if (!isGlassboxError(error, 'CHAIN_REVERTED')) throw error;
      // drawn by someone else meanwhile, or nobody eligible: the chain says which
      return (await getChallenge(p.chain, info.challengeId)).committee.length > 0;
    }
  }

  /** Resolves a challenge once it is due; true once it is settled on chain. */
  async function settle(info: ChallengeInfo): Promise<boolean> {
    if (info.status !== 'open') return true;
    const due =
      Date.now() >= info.revealDeadlineMs + 1000 ||
      (info.kind === 'wrong' && info.committee.length > 0 && info.revealed === info.committee.length);
    if (!due) return false;
    // the challenger and every member resolve once it is due: whoever is first settles it
    const { status, tx: ours } = await tx(() => settleChallenge(p.chain, info.challengeId));
    if (ours) log.info({ challengeId: info.challengeId.toString(), status }, 'challenge resolved');
    return status !== 'open';
  }

  /** Draws, resolves and follows up the challenges this verifier opened or relies on. */
  async function settleOwn(): Promise<void> {
    await eachGuarded(
      store.challenges().filter((c) => !c.settled),
      (c) => ({ challengeId: c.challengeId.toString() }),
      'settling a challenge failed; retrying',
      async (c) => {
        const info = await getChallenge(p.chain, c.challengeId);
        await drawWhenDue(info);
        if (!(await settle(info))) return;
        // the data was published on chain: check it like any sampled receipt
        if (c.kind === 'unavailable' && info.status === 'answered') await followAnswer(c);
        store.settleChallenge(c.challengeId);
      },
    );
  }

  // ---- committee ----

  function scanDuties(): Promise<void> {
    return sinceCursor('challenges', async (fromBlock, toBlock) => {
      for (const e of await getCommitteesDrawn(p.chain, { fromBlock, toBlock }))
        if (e.args.committee.some((m) => getAddress(m) === me)) store.addDuty(e.args.id);
    });
  }

  type Judgement =
    | { readonly kind: 'vote'; readonly guilty: boolean; readonly detail: string; readonly computeMs: number }
    | { readonly kind: 'abstain'; readonly detail: string };
  const vote = (guilty: boolean, detail: string, computeMs = 0): Judgement => ({
    kind: 'vote',
    guilty,
    detail,
    computeMs,
  });
  const abstain = (detail: string): Judgement => ({ kind: 'abstain', detail: `cannot judge: ${detail}` });

  /**
   * Re-executes the challenged receipt from the challenger's evidence and decides: guilty,
   * innocent, or abstain when this member cannot judge (the model is nowhere to be had, another
   * runtime, its own failure). An abstention commits nothing and costs the vote penalty, so a
   * member that can't judge is never counted as vouching for the provider (audit C-3).
   */
  async function judge(info: ChallengeInfo): Promise<Judgement | undefined> {
    const receipt = await getChallengedReceipt(p.chain, info.challengeId);
    const [opened] = await getEvents<ChallengeOpened>(p.chain, {
      contract: 'disputeManager',
      eventName: 'ChallengeOpened',
      args: { id: info.challengeId },
    });
    if (!receipt || !opened) return abstain('no challenged receipt on chain');
    const ours = p.engines.list.map((engine) => engine.runtimeHash);
    if (!ours.includes(receipt.runtime))
      return abstain(`runtime ${receipt.runtime} differs from ours (${ours.join(', ')})`);
    const evidence = await fetchEvidence(opened.args.inputsUri, receipt, info);
    // The challenger must make its case: no valid evidence, no model to run, no outputs to compare
    // with (below) all count against it. Holding them against the members instead would let a
    // challenger void its own challenges at their expense.
    if (evidence === 'later') return undefined;
    if (!evidence) return vote(false, 'the challenger served no valid evidence');
    const { endpoint } = await getProvider(p.chain, receipt.provider);
    const pkg = await p.modelOf(receipt.model, [endpoint, new URL(opened.args.inputsUri).origin]);
    if (!pkg)
      return vote(false, `model ${receipt.model} is served neither by the provider nor by the challenger`);
    if (info.divergence) return judgeStep(receipt, pkg, evidence.inputs, info.divergence);
    const found = await recheck({
      receipt,
      inputs: evidence.inputs,
      ...(evidence.outputs ? { outputs: evidence.outputs } : {}),
      engines: p.engines,
      pkg,
    });
    if (found.kind === 'skipped') return abstain(found.detail);
    if (found.kind === 'unproven')
      return vote(false, `the challenger did not make its case: ${found.detail}`);
    return found.kind === 'match'
      ? vote(false, 'our re-execution agrees with the receipt', found.computeMs)
      : vote(true, found.detail, found.computeMs);
  }

  /** Judges a bisected challenge on the one step it names: whose hash does our run give there? */
  async function judgeStep(
    receipt: Receipt,
    pkg: ModelPackage,
    inputs: Uint8Array,
    d: NonNullable<ChallengeInfo['divergence']>,
  ): Promise<Judgement> {
    // Only up to the named operator: nothing after it bears on the verdict.
    const attempt = await runSafely(() =>
      p.engines.for(pkg, { trace: true }).traceStep(pkg, decodeTensors(inputs), d.step),
    );
    if ('invalid' in attempt)
      return vote(true, `the receipt's inputs are not valid for the model: ${attempt.invalid}`);
    if ('failed' in attempt) return abstain(attempt.failed);
    const ours: TraceStepResult = attempt.value;
    return vote(
      ours.step.hash !== d.providerHash,
      `step ${d.step} (${ours.step.op} ${ours.step.node}): ours ${ours.step.hash}, provider ${d.providerHash}, challenger ${d.challengerHash}`,
      ours.durationMs,
    );
  }

  /**
   * The challenger's evidence: fetched once, over http(s) or a data: URI only (no redirects, a
   * byte cap, a timeout: the URI is the challenger's to choose), validated, and its inputs must be
   * the receipt's. Undefined when it is none of that.
   */
  async function fetchEvidence(
    uri: string,
    receipt: Receipt,
    info: ChallengeInfo,
  ): Promise<{ inputs: Uint8Array; outputs?: Uint8Array } | 'later' | undefined> {
    try {
      if (!['http:', 'https:', 'data:'].includes(new URL(uri).protocol)) return undefined;
      const response = await fetch(uri, { signal: AbortSignal.timeout(5_000), redirect: 'error' });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const body = parseEvidenceResponse(
        await readJsonBody(response, { maxBytes: DEFAULT_MAX_RESPONSE_BYTES, from: 'the challenger' }),
      );
      const inputs = unbase64(body.inputs);
      if (dataHash(inputs) !== receipt.inputHash) return undefined;
      return { inputs, ...(body.outputs ? { outputs: unbase64(body.outputs) } : {}) };
    } catch {
      // Unreachable or garbled now: try again on later passes (the accused could flood the
      // challenger for a moment), and hold it against the challenger only near the deadline.
      const lastCall = info.commitDeadlineMs - Math.max(4 * p.pollIntervalMs, 5_000);
      return Date.now() < lastCall ? 'later' : undefined;
    }
  }

  async function performDuty(duty: Duty): Promise<void> {
    const info = await getChallenge(p.chain, duty.challengeId);
    const id = duty.challengeId;
    if (info.status !== 'open') return void store.markDuty(id, { settled: true });
    const now = Date.now();
    let decision = duty.decision;
    if (!decision && now < info.commitDeadlineMs) {
      const judged = await judge(info);
      if (!judged) return; // the evidence may come: judge on a later pass
      decision = judged.kind === 'vote' ? { ...judged, salt: randomSalt() } : judged;
      store.decide(id, decision, judged.kind === 'vote' ? judged.computeMs : 0); // before the commit: a restart reveals this
      log.info(
        {
          challengeId: id.toString(),
          decision: decision.kind,
          guilty: judged.kind === 'vote' ? judged.guilty : undefined,
          detail: decision.detail,
        },
        'committee decision',
      );
    }
    if (!decision) return; // too late to commit: nothing to reveal either
    if (decision.kind === 'abstain') {
      if (await settle(info)) store.markDuty(id, { settled: true });
      return;
    }
    const ballot = decision;
    const onChain = () => getVote(p.chain, { challengeId: id, member: me });
    if (!duty.committed) {
      if (!(await onChain()).committed) {
        if (now >= info.commitDeadlineMs) return;
        await tx(() => commitVote(p.chain, { challengeId: id, guilty: ballot.guilty, salt: ballot.salt }));
      }
      store.markDuty(id, { committed: true });
      return; // reveal on a later pass, once the chain says reveals are open
    }
    const revealOpen = now >= info.commitDeadlineMs || info.committed === info.committee.length;
    if (!duty.revealed && revealOpen && now < info.revealDeadlineMs) {
      if (!(await onChain()).revealed)
        await tx(() => revealVote(p.chain, { challengeId: id, guilty: ballot.guilty, salt: ballot.salt }));
      store.markDuty(id, { revealed: true });
      log.info({ challengeId: id.toString(), guilty: ballot.guilty }, 'committee vote revealed');
      return;
    }
    if (await settle(info)) store.markDuty(id, { settled: true });
  }

  async function performDuties(): Promise<void> {
    // one duty that fails must not make this member miss the commits of the others
    await eachGuarded(
      store.duties().filter((d) => !d.settled),
      (d) => ({ challengeId: d.challengeId.toString() }),
      'a committee duty failed; retrying',
      performDuty,
    );
  }

  // ---- provider: availability, and draws of challenges against it ----

  /**
   * Draws the committees of challenges against this provider: a challenger that doesn't like the
   * draw block's hash could otherwise wait for it to expire (256 blocks) and get another.
   */
  async function drawAgainstUs(): Promise<void> {
    const name = 'opened-against-us';
    const latest = await p.chain.publicClient.getBlockNumber();
    const from = store.cursor(name) ?? p.chain.deployment.startBlock;
    if (latest < from) return;
    // the cursor stays at the oldest challenge still to draw, so a restart picks it up again
    let next = latest + 1n;
    for (const e of await getEvents<ChallengeOpened>(p.chain, {
      contract: 'disputeManager',
      eventName: 'ChallengeOpened',
      args: { provider: me },
      fromBlock: from,
      toBlock: latest,
    }))
      if (!(await drawWhenDue(await getChallenge(p.chain, e.args.id))) && e.blockNumber < next)
        next = e.blockNumber;
    store.setCursor(name, next);
  }

  function answerChallenges(): Promise<void> {
    return sinceCursor('availability', async (fromBlock, toBlock) => {
      if (p.answersAvailability === false) return;
      const range = { provider: me, fromBlock, toBlock };
      for (const e of await getBatchChallenges(p.chain, range)) {
        if ((await getChallenge(p.chain, e.args.id)).status !== 'open') continue;
        const { root } = await getBatch(p.chain, e.args.batchId);
        const receiptHashes = p.db.batchLeaves(root);
        await answer(e.args.id, 'batch', () =>
          answerBatch(p.chain, { challengeId: e.args.id, batchId: e.args.batchId, receiptHashes }),
        );
      }
      for (const e of await getAvailabilityChallenges(p.chain, range)) {
        if ((await getChallenge(p.chain, e.args.id)).status !== 'open') continue;
        const row = p.db.getReceiptByHash(e.args.receiptHash);
        if (!row?.inputs || !row.outputs) {
          log.error(
            { challengeId: e.args.id.toString() },
            'availability challenge for a receipt we do not have',
          );
          continue;
        }
        await answerData(e.args.id, signedReceiptFromJson(row.receipt).receipt, row.inputs, row.outputs);
      }
    });
  }

  /**
   * Publishes a challenged receipt's data: in one transaction when its inputs and outputs are each
   * hashed whole, else chunk by chunk (one transaction each, through the account's lane, so other
   * work of this node goes on between them), skipping chunks already on chain: a pass stopped
   * half way, by a restart or by someone else publishing too, carries on where the chain is.
   */
  async function answerData(id: bigint, receipt: Receipt, inputs: Uint8Array, outputs: Uint8Array) {
    const sides = { inputs: chunkData(inputs), outputs: chunkData(outputs) };
    if (sides.inputs.root === ZERO_ROOT && sides.outputs.root === ZERO_ROOT) {
      await answer(id, 'receipt', () =>
        answerAvailability(p.chain, { challengeId: id, receipt, inputs, outputs }),
      );
      return;
    }
    const published = await getPublishedChunks(p.chain, id);
    for (const side of ['inputs', 'outputs'] as const satisfies readonly DataSide[])
      for (let index = 0; index < sides[side].count; index++) {
        if (isChunkPublished(published[side], index)) continue;
        const chunk = sides[side].chunk(index);
        const sent = await answer(id, `${side} chunk ${index}`, () =>
          answerAvailabilityChunk(p.chain, { challengeId: id, receipt, side, chunk }),
        );
        if (!sent) return; // a revert (the answer period is over, the data no longer matches) ends it
      }
  }

  /**
   * Sends an answer (or one chunk of it); a revert (the data no longer rebuilds what was
   * committed, the period is over) is logged, not retried. True when it was sent.
   */
  async function answer(id: bigint, what: string, send: () => Promise<unknown>): Promise<boolean> {
    try {
      await tx(send);
      log.info({ challengeId: id.toString(), what }, 'availability answer sent on chain');
      return true;
    } catch (error) {
      if (!isGlassboxError(error, 'CHAIN_REVERTED')) throw error;
      // someone else published this chunk first: that it is on chain is all that counts
      if (error.details.error === 'ChunkAlreadyPublished') return true;
      log.error(
        { err: error, challengeId: id.toString(), what },
        'could not answer an availability challenge',
      );
      return false;
    }
  }

  /** One pass of each role; a role that fails is logged and does not hold up the others. */
  async function tick(): Promise<void> {
    const guarded = async (role: NodeRole, work: () => Promise<void>) => {
      if (!has(role)) return;
      await work().catch((error: unknown) => log.error({ err: error, role }, 'role pass failed; retrying'));
    };
    await guarded('provider', async () => {
      await answerChallenges();
      await drawAgainstUs();
    });
    await guarded('verifier', async () => {
      await scanBatches();
      await checkBatches();
      await settleOwn();
    });
    await guarded('committee', async () => {
      await scanDuties();
      await performDuties();
    });
  }

  let running: Promise<void> | undefined;
  const loop = setInterval(() => {
    running ??= tick()
      .catch((error: unknown) => log.error({ err: error }, 'verifier pass failed; retrying'))
      .finally(() => {
        running = undefined;
      });
  }, p.pollIntervalMs);
  loop.unref();

  return {
    tick: () => (running ??= tick().finally(() => (running = undefined))),
    status: () => status(p, me),
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
    async stop() {
      clearInterval(loop);
      await running?.catch(() => undefined);
      store.close();
    },
  };
}

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

function randomSalt(): Hex {
  return `0x${Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('hex')}`;
}

function status(p: VerifierRoleParameters, me: Address): VerifierStatus {
  const samples = p.store.samples();
  const outcomes: Record<SampleOutcome, number> = { match: 0, mismatch: 0, unavailable: 0, skipped: 0 };
  for (const s of samples) outcomes[s.outcome]++;
  return {
    roles: p.roles,
    address: me,
    ...(p.roles.includes('verifier')
      ? {
          verifier: {
            sampleRate: p.sampleRate,
            batchesSeen: p.store.batchCount(),
            sampled: samples.length,
            outcomes,
            computeMs: samples.reduce((t, s) => t + s.computeMs, 0),
            challenges: p.store.challenges().map(({ batch, ...c }) => ({
              ...c,
              challengeId: c.challengeId.toString(),
              ...(batch ? { batchId: batch.id.toString() } : {}),
            })),
            samples: samples.map(({ batchId, challengeId, ...s }) => ({
              ...s,
              batchId: batchId.toString(),
              ...(challengeId === undefined ? {} : { challengeId: challengeId.toString() }),
            })),
          },
        }
      : {}),
    ...(p.roles.includes('committee')
      ? {
          committee: {
            duties: p.store.duties().map((d) => ({
              challengeId: d.challengeId.toString(),
              ...(d.decision?.kind === 'vote' ? { guilty: d.decision.guilty } : {}),
              ...(d.decision ? { decision: d.decision.kind, detail: d.decision.detail } : {}),
              computeMs: d.computeMs,
              committed: d.committed,
              revealed: d.revealed,
              settled: d.settled,
            })),
          },
        }
      : {}),
  };
}
