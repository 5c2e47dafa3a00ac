// At most `parallel` generations at once (each holds its own KV cache and CPU threads), a
// bounded line behind them, and refusals instead of unbounded waiting: a full line is 429, a
// closed one 503. A waiter whose client goes away leaves the line.
import { ApiError } from './api-error.js';

export type Release = () => void;

interface Waiter {
  grant: (release: Release) => void;
  refuse: (err: ApiError) => void;
}

export class RequestQueue {
  private active = 0;
  private readonly waiting: Waiter[] = [];
  private closed = false;
  private idleWaiters: Array<() => void> = [];

  constructor(
    readonly parallel: number,
    readonly maxQueued: number,
    /** Sent as Retry-After with a 429. */
    private readonly retryAfterSeconds = 1,
  ) {
    if (!Number.isInteger(parallel) || parallel < 1) throw new RangeError('parallel must be a positive integer');
    if (!Number.isInteger(maxQueued) || maxQueued < 0) throw new RangeError('queue must be a non-negative integer');
  }

  get running(): number {
    return this.active;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** A slot; call the returned function exactly once when done with it. */
  acquire(signal?: AbortSignal): Promise<Release> {
    if (this.closed) return Promise.reject(shuttingDown());
    if (signal?.aborted) return Promise.reject(new ApiError(499, 'the client went away', 'client_closed'));
    if (this.active < this.parallel) {
      this.active++;
      return Promise.resolve(this.releaser());
    }
    if (this.waiting.length >= this.maxQueued) {
      return Promise.reject(
        new ApiError(429, `the server is busy (${this.active} running, ${this.waiting.length} waiting); retry later`, 'queue_full', null, {
          'retry-after': String(this.retryAfterSeconds),
        }),
      );
    }
    return new Promise<Release>((resolve, reject) => {
      const onAbort = () => {
        const i = this.waiting.indexOf(waiter);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(new ApiError(499, 'the client went away', 'client_closed'));
      };
      const waiter: Waiter = {
        grant: (release) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(release);
        },
        refuse: (err) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(waiter);
    });
  }

  /** Refuses everyone waiting and every later acquire(); running work keeps its slots. */
  close(): void {
    this.closed = true;
    for (const w of this.waiting.splice(0)) w.refuse(shuttingDown());
  }

  /** Resolves once nothing holds a slot. */
  idle(): Promise<void> {
    if (this.active === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private releaser(): Release {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      // The slot passes straight to the next waiter, so a newcomer cannot jump the line.
      if (next) next.grant(this.releaser());
      else if (--this.active === 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
    };
  }
}

export function shuttingDown(): ApiError {
  return new ApiError(503, 'the server is shutting down', 'shutting_down', null, { connection: 'close' });
}
