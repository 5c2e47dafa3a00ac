// Generation running on the model's thread (native/decode_run.h), seen from JS as an async
// iterator of picks, greedy or sampled. The native loop goes on to the next step while JS handles
// a pick, so no step waits for the event loop; what the consumer did not take is rolled back
// when it stops.
import { HovleError } from '../errors.js';
import type { NativeContext, NativeDecodeResult } from '../native/addon.js';
import type { Sampler } from './sampler.js';

export interface DecodeOptions {
  /** Evaluations at most: `first` is the first of them, and each one yields a pick. */
  maxSteps: number;
  /** Ids that end the run: yielded, never evaluated (an end-of-turn id, say). */
  stopIds?: readonly number[];
  /**
   * Ends the run after the step in progress. next() then rejects with ABORTED once the cache is
   * rolled back to the picks taken, so `ctx.cached` is final when it does. That wait is a step,
   * or longer when another context on the same model has a graph queued on the model's thread
   * first (a prefill: seconds on a CPU). Session.ask() and stream() reject at once instead, and
   * keep the session busy until the rollback is done.
   */
  signal?: AbortSignal;
  /**
   * Draws each pick with this sampler, from the step's logits, instead of taking the argmax on
   * the device. The run continues the sampler's stream: each pick taken advances its state as
   * if it had drawn the pick itself (do not use it elsewhere while the run goes on).
   */
  sampler?: Sampler;
  /**
   * With a sampler: the ids before `first` that its penalties look back on (the picks and
   * `first` follow them). Default: none.
   */
  history?: readonly number[];
}

/** What a run needs of its context. @internal */
export interface RunHost {
  /** Runs `fn` in the context's call queue. */
  serial(fn: () => Promise<void>): Promise<void>;
  native(): NativeContext;
  /** Queued calls started so far. */
  callsStarted(): number;
}

/** Why a run ended. */
export type DecodeEnd = 'maxSteps' | 'stopId' | 'contextFull' | 'stopped';

/**
 * The picks of a decode run, in order. The run evaluates `first`, then each pick it yields but
 * the last. Once the consumer stops (break out of `for await`, or return()), the cache holds
 * `first` and the picks taken before the last one taken: one position per pick taken. Picks the
 * native loop made ahead of the consumer are rolled back, so what is cached never depends on
 * timing. (Calls queued behind the run see the cache as the consumer left it when it stopped
 * before the run ended; when it stops later and such a call has run since, nothing is rolled
 * back, because that would take the call's tokens too.) A failed step (an id the cache cannot
 * take, say) throws after the picks made before it.
 */
export class DecodeRun implements AsyncIterableIterator<number> {
  private readonly picks: number[] = [];
  private readonly states: number[] = [];
  private taken = 0;
  private settled = false;
  private reason: DecodeEnd | undefined;
  private failure: unknown;
  /** ABORTED or DISPOSED: thrown by next() at once, ahead of picks not yet taken. */
  private interrupted: HovleError | undefined;
  private closed = false;
  private wake: (() => void) | undefined;
  private stopNative: (() => void) | undefined;
  private stopAsked = false;
  /** The run's slot in the context's call queue; settles (never rejects) when the run has. */
  private slot: Promise<void> = Promise.resolve();
  /** Rolls the cache back to `keep` picks past where the run started (queued as a call). */
  private rollback: ((keep: number) => Promise<void>) | undefined;
  /** next() calls run one after another (each may wait for a pick). */
  private nextChain: Promise<unknown> = Promise.resolve();
  private closing: Promise<void> | undefined;

  private readonly sampler: Sampler | undefined;

  /** @internal Use ModelContext.decode. */
  constructor(
    private readonly host: RunHost, first: number,
    options: { maxSteps: number; stopIds: Int32Array; signal?: AbortSignal; sampler?: Sampler; history?: Int32Array },
  ) {
    const { signal, sampler } = options;
    this.sampler = sampler;
    const onAbort = () => this.interrupt(new HovleError('ABORTED', 'decoding was aborted', { cause: signal?.reason }));
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    this.slot = host.serial(async () => {
      const c = host.native();
      const base = { llm: c.nPast('llm'), embedding: c.nPast('embedding') };
      const truncate = (keep: number) => {
        c.truncate('llm', base.llm + keep);
        c.truncate('embedding', base.embedding + keep);
      };
      const onPick = (i: number, id: number, state: number) => this.onPick(i, id, state);
      const h = sampler
        ? c.decode(first, options.maxSteps, options.stopIds, onPick, sampler.native, options.history ?? new Int32Array(0))
        : c.decode(first, options.maxSteps, options.stopIds, onPick);
      this.stopNative = h.stop;
      if (this.stopAsked) h.stop();
      const r = await h.promise;
      this.absorb(r);
      if (this.closed) {
        // The consumer stopped while the run went on: the cache it saw, before any call queued
        // behind the run starts.
        if (this.taken < r.picks.length) {
          try {
            truncate(this.taken);
          } catch (e) {
            ignoreDisposed(e);
          }
        }
        return;
      }
      const slot = host.callsStarted();
      // Later, from return(): only while no other call has run since (its tokens would go too).
      this.rollback = (keep) => host.serial(async () => {
        if (host.callsStarted() === slot + 1) truncate(keep);
      });
    }).catch((e: unknown) => {
      this.failure = e;
    }).finally(() => {
      signal?.removeEventListener('abort', onAbort);
      this.settled = true;
      this.notify();
    });
  }

  /** Why the run ended; undefined while it runs. */
  get end(): DecodeEnd | undefined {
    return this.reason;
  }

  /** Ends the run after the step in progress; picks already made are still yielded. */
  stop(): void {
    this.stopAsked = true;
    this.stopNative?.();
  }

  next(): Promise<IteratorResult<number, undefined>> {
    const r = this.nextChain.then(() => this.nextNow());
    this.nextChain = r.catch(() => undefined);
    return r;
  }

  private async nextNow(): Promise<IteratorResult<number, undefined>> {
    for (;;) {
      // After return() the picks not taken are gone from the cache: none are handed out.
      if (this.closed && !this.interrupted) return { value: undefined, done: true };
      if (this.interrupted) {
        // for-await does not call return() when next() throws: roll back here.
        await this.return();
        throw this.interrupted;
      }
      if (this.taken < this.picks.length) {
        this.host.native(); // DISPOSED once the context is, even for picks made before
        if (this.sampler) this.sampler.state = this.states[this.taken]!;
        return { value: this.picks[this.taken++]!, done: false };
      }
      if (this.settled) {
        const e = this.failure;
        this.failure = undefined;
        if (e !== undefined) throw e;
        return { value: undefined, done: true };
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  /** Stops the run and rolls the cache back to the picks taken; resolves when that is done. */
  async return(): Promise<IteratorResult<number, undefined>> {
    this.closing ??= this.close();
    await this.closing;
    return { value: undefined, done: true };
  }

  private async close(): Promise<void> {
    this.closed = true;
    this.stop();
    await this.slot;
    // The run settled before the consumer stopped: roll back what it made ahead.
    if (this.rollback && this.taken < this.picks.length) await this.rollback(this.taken).catch(ignoreDisposed);
  }

  /**
   * @internal Settles (never rejects) when the native run has, with the rollback of a consumer
   * that stopped before that; return() resolves after any later rollback too.
   */
  get finished(): Promise<void> {
    return this.slot;
  }

  /** @internal Ends the run with `error` (its context was disposed, say). */
  interrupt(error: HovleError): void {
    this.interrupted ??= error;
    this.stop();
    this.notify();
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  private onPick(index: number, id: number, state: number): void {
    // Picks arrive in order; the result, which may come first, lists them all too.
    if (index !== this.picks.length) return;
    this.picks.push(id);
    this.states.push(state);
    this.notify();
  }

  private absorb(r: NativeDecodeResult): void {
    for (let i = this.picks.length; i < r.picks.length; i++) {
      this.picks.push(r.picks[i]!);
      this.states.push(r.states[i]!);
    }
    if (r.reason === 'error') this.failure = r.error;
    else this.reason = r.reason;
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }
}

function ignoreDisposed(e: unknown): void {
  if (!(e instanceof HovleError && e.code === 'DISPOSED')) throw e;
}
