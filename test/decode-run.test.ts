// ModelContext.decode: generation as one task on the model's thread (the picks handed to JS
// while the next step runs), greedy or sampled. Checked against the reference's greedy
// continuations (test/fixtures/<variant>/golden, copied from the shared fixtures) and against
// the same steps taken one evaluate() at a time (with the same sampler), including what stays
// cached when the consumer stops early while the native loop has run ahead.
import { describe, expect, it } from 'vitest';

import type { ModelContext } from '../src/runtime/model.js';
import type { DecodeRun } from '../src/runtime/decode-run.js';
import { Sampler } from '../src/runtime/sampler.js';
import { goldenCases, goldenI32, maxAbs, type Variant } from './helpers/golden.js';
import { tinyF32Models } from './helpers/tiny-models.js';

const models = tinyF32Models('decode-run');

const tiny = () => models['hovle-tiny']!;
const textCase = (v: Variant) => goldenCases(v).find((c) => c.name === 'text_only_en')!;

/** A context holding the text_only_en prompt, and the pick at its last position. */
async function prompted(v: Variant, contextSize = 512): Promise<{ ctx: ModelContext; first: number; base: number }> {
  const ids = goldenI32(v, textCase(v), 'input_ids');
  const ctx = await models[v]!.createContext({ contextSize, kvType: 'f32' });
  const r = await ctx.evaluate(ids, [], { logits: 'last', greedy: true });
  return { ctx, first: r.argmax![0]!, base: ids.length };
}

async function take(run: DecodeRun, n: number): Promise<number[]> {
  const out: number[] = [];
  for await (const id of run) {
    out.push(id);
    if (out.length === n) break;
  }
  return out;
}

/** The logits after evaluating `ids` one at a time on top of `ctx`. */
async function stepLogits(ctx: ModelContext, ids: number[]): Promise<Float32Array> {
  let logits: Float32Array = new Float32Array(0);
  for (const id of ids) logits = (await ctx.evaluate([id], [], { logits: 'last' })).logits;
  return logits;
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

const until = async (cond: () => boolean) => {
  while (!cond()) await new Promise((r) => setTimeout(r, 2));
};

describe('decode (greedy)', () => {
  for (const v of ['hovle-tiny', 'hovle-tiny-post'] as const) {
    it(`${v}: the picks are the reference's greedy continuation`, async () => {
      const g = textCase(v).greedy!;
      const { ctx, first, base } = await prompted(v);
      expect(first).toBe(g.ids[0]);
      const run = ctx.decode(first, { maxSteps: g.ids.length - 1, stopIds: [g.eos_id] });
      const picks: number[] = [];
      for await (const id of run) picks.push(id);
      expect([first, ...picks]).toEqual(g.ids);
      expect(run.end).toBe(g.ids.includes(g.eos_id) ? 'stopId' : 'maxSteps');
      // Every pick but a stop id was evaluated after `first`.
      expect(ctx.cached.llm).toBe(base + picks.length);
      ctx.dispose();
    });
  }

  it('leaves the cache as the same steps taken one evaluate() at a time', async () => {
    const a = await prompted('hovle-tiny');
    const b = await prompted('hovle-tiny');
    const picks = await take(a.ctx.decode(a.first, { maxSteps: 12 }), 12);
    expect(a.ctx.cached.llm).toBe(a.base + 12);
    // The cache holds first and the 11 picks before the last; the last one's logits compared.
    const steps: number[] = [];
    let tok = b.first;
    for (let i = 0; i < 12; i++) {
      const r = await b.ctx.evaluate([tok], [], { logits: 'last', greedy: true });
      tok = r.argmax![0]!;
      steps.push(tok);
    }
    expect(picks).toEqual(steps);
    expect(maxDiff(await stepLogits(a.ctx, [picks[11]!]), await stepLogits(b.ctx, [picks[11]!]))).toBeLessThan(1e-5);
    a.ctx.dispose();
    b.ctx.dispose();
  });

  it('stopping early rolls back what the native loop made ahead, whether it had finished or not', async () => {
    const ref = await prompted('hovle-tiny');
    const all = await take(ref.ctx.decode(ref.first, { maxSteps: 40 }), 40);
    const expectAfter = async (ctx: ModelContext, base: number, taken: number, first: number) => {
      expect(ctx.cached.llm).toBe(base + taken);
      const fresh = await prompted('hovle-tiny');
      const want = await stepLogits(fresh.ctx, [first, ...all.slice(0, taken)]);
      expect(maxDiff(await stepLogits(ctx, [all[taken - 1]!]), want)).toBeLessThan(1e-5);
      fresh.ctx.dispose();
    };

    // Settled first: the rollback is queued by return().
    const a = await prompted('hovle-tiny');
    const runA = a.ctx.decode(a.first, { maxSteps: 40 });
    expect(await runA.next()).toEqual({ value: all[0], done: false });
    expect(await runA.next()).toEqual({ value: all[1], done: false });
    await until(() => runA.end !== undefined);
    await runA.return();
    await expectAfter(a.ctx, a.base, 2, a.first);

    // Still running, with a call queued behind it: the rollback happens before that call.
    const b = await prompted('hovle-tiny', 4096);
    const runB = b.ctx.decode(b.first, { maxSteps: 4000 });
    const got = [(await runB.next()).value, (await runB.next()).value, (await runB.next()).value];
    expect(got).toEqual(all.slice(0, 3));
    // Let the native loop get well ahead (a tiny-model step is ~1 ms; 4000 steps would take seconds).
    await new Promise((r) => setTimeout(r, 30));
    const queued = b.ctx.evaluate([all[2]!], [], { logits: 'last' });
    await runB.return();
    expect(runB.end).toBe('stopped');
    const fresh = await prompted('hovle-tiny');
    expect(maxDiff((await queued).logits, await stepLogits(fresh.ctx, [b.first, ...all.slice(0, 3)]))).toBeLessThan(1e-5);
    expect(b.ctx.cached.llm).toBe(b.base + 4);
    fresh.ctx.dispose();

    // Stopped after the run ended and another call ran: that call's token is not taken away.
    const c = await prompted('hovle-tiny');
    const runC = c.ctx.decode(c.first, { maxSteps: 6 });
    await runC.next();
    await until(() => runC.end !== undefined);
    await c.ctx.evaluate([all[5]!], [], { logits: 'last' });
    await runC.return();
    expect(c.ctx.cached.llm).toBe(c.base + 7);
    for (const x of [ref, a, b, c]) x.ctx.dispose();
  });

  it('ends at a stop id (yielded, not evaluated), at maxSteps, and at a full cache', async () => {
    const ref = await prompted('hovle-tiny');
    const all = await take(ref.ctx.decode(ref.first, { maxSteps: 10 }), 10);
    // A stop id that first appears at pick k ends the run there.
    const k = all.findIndex((id, i) => i >= 2 && all.indexOf(id) === i);
    const s = await prompted('hovle-tiny');
    const run = s.ctx.decode(s.first, { maxSteps: 10, stopIds: [all[k]!] });
    expect(await take(run, 100)).toEqual(all.slice(0, k + 1));
    expect(run.end).toBe('stopId');
    expect(s.ctx.cached.llm).toBe(s.base + k + 1);

    const m = await prompted('hovle-tiny');
    const runM = m.ctx.decode(m.first, { maxSteps: 5 });
    expect(await take(runM, 100)).toEqual(all.slice(0, 5));
    expect(runM.end).toBe('maxSteps');
    expect(m.ctx.cached.llm).toBe(m.base + 5);

    const f = await prompted('hovle-tiny', textCase('hovle-tiny').seqLen + 3);
    const runF = f.ctx.decode(f.first, { maxSteps: 10 });
    expect(await take(runF, 100)).toEqual(all.slice(0, 3));
    expect(runF.end).toBe('contextFull');
    expect(f.ctx.cached.llm).toBe(f.ctx.contextSize);
    for (const c of [ref, s, m, f]) c.ctx.dispose();
  });

  it('an AbortSignal ends the run with ABORTED and rolls back to the picks taken', async () => {
    const a = await prompted('hovle-tiny', 4096);
    const controller = new AbortController();
    const run = a.ctx.decode(a.first, { maxSteps: 4000, signal: controller.signal });
    const got: number[] = [];
    await expect((async () => {
      for await (const id of run) {
        got.push(id);
        if (got.length === 2) controller.abort(new Error('enough'));
      }
    })()).rejects.toMatchObject({ code: 'ABORTED' });
    expect(got.length).toBe(2);
    expect(a.ctx.cached.llm).toBe(a.base + 2);
    // Still usable, and an already-aborted signal starts nothing.
    expect((await a.ctx.evaluate([got[1]!], [], { logits: 'last', greedy: true })).argmax!.length).toBe(1);
    await expect(a.ctx.decode(a.first, { maxSteps: 3, signal: controller.signal }).next()).rejects.toMatchObject({ code: 'ABORTED' });
    expect(a.ctx.cached.llm).toBe(a.base + 3);
    a.ctx.dispose();
  });

  it("another context's call on the same model runs between two steps, not after the run", async () => {
    // Sessions sharing a model took turns token by token when each step was an evaluate(); a run
    // keeps that by letting a call queued on the model's thread go first between two steps.
    const a = await prompted('hovle-tiny', 4096);
    const b = await tiny().createContext({ contextSize: 512, kvType: 'f32' });
    const run = a.ctx.decode(a.first, { maxSteps: 400 });
    let taken = 0;
    await run.next();
    taken++;
    let takenWhenB = -1;
    const ids = goldenI32('hovle-tiny', textCase('hovle-tiny'), 'input_ids');
    const other = b.evaluate(ids, [], { logits: 'last', greedy: true }).then((r) => {
      takenWhenB = taken;
      return r.argmax![0];
    });
    for await (const _ of run) taken++;
    expect(await other).toBe(a.first);
    expect(taken).toBe(400);
    // Without turns it would resolve after all 400 picks (a tiny-model step is ~0.4 ms).
    expect(takenWhenB).toBeLessThan(100);
    a.ctx.dispose();
    b.dispose();
  });

  it('iterator protocol: next() calls queue, next() after return() is done, return() twice waits', async () => {
    const ref = await prompted('hovle-tiny');
    const all = await take(ref.ctx.decode(ref.first, { maxSteps: 8 }), 8);
    const a = await prompted('hovle-tiny', 4096);
    const run = a.ctx.decode(a.first, { maxSteps: 4000 });
    // Three next() calls at once get the first three picks, in order.
    expect((await Promise.all([run.next(), run.next(), run.next()])).map((r) => r.value)).toEqual(all.slice(0, 3));
    const [r1, r2] = [run.return(), run.return()];
    await r2;
    expect(a.ctx.cached.llm).toBe(a.base + 3);
    await r1;
    expect(await run.next()).toEqual({ value: undefined, done: true });
    expect(a.ctx.cached.llm).toBe(a.base + 3);
    for (const c of [ref, a]) c.ctx.dispose();
  });

  it('refuses bad arguments before any work, and a disposed context', async () => {
    const a = await prompted('hovle-tiny');
    const m = tiny();
    const V = m.hparams.vocabSize;
    for (const first of [-1, V, 1.5, Number.NaN]) expect(() => a.ctx.decode(first, { maxSteps: 2 })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => a.ctx.decode(m.vocab.imageContextId, { maxSteps: 2 })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    for (const maxSteps of [0, -1, 2.5, 2 ** 31]) expect(() => a.ctx.decode(a.first, { maxSteps })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => a.ctx.decode(a.first, { maxSteps: 2, stopIds: [V] })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(a.ctx.cached.llm).toBe(a.base);

    // Disposed while a run is going: the run stops after its step (it would otherwise go on to
    // maxSteps on a context nobody can use), next() says DISPOSED, nothing crashes.
    const b = await prompted('hovle-tiny', 4096);
    const run = b.ctx.decode(b.first, { maxSteps: 4000 });
    await run.next();
    b.ctx.dispose();
    await expect(run.next()).rejects.toMatchObject({ code: 'DISPOSED' });
    await run.finished;
    expect(run.end).toBe('stopped');
    expect(() => b.ctx.decode(b.first, { maxSteps: 2 })).toThrow(expect.objectContaining({ code: 'DISPOSED' }));
    // Disposed after the run ended: the picks it made are not handed out any more.
    const d = await prompted('hovle-tiny');
    const ended = d.ctx.decode(d.first, { maxSteps: 4 });
    await ended.next();
    await ended.finished;
    d.ctx.dispose();
    await expect(ended.next()).rejects.toMatchObject({ code: 'DISPOSED' });
    // The model and its other contexts carry on.
    expect(maxAbs((await a.ctx.evaluate([a.first], [], { logits: 'last' })).logits)).toBeGreaterThan(0);
    a.ctx.dispose();
  });
});

describe('decode (sampled)', () => {
  // A biased token that wins whenever the penalties let it: a history off by one token (the one
  // just evaluated left out, say) changes the picks (checked by making that mistake).
  const options = { temperature: 0.3, topK: 60, topP: 0.97, repeatPenalty: 3, presencePenalty: 1, penaltyWindow: 4, logitBias: { 77: 7 } };
  const V = () => tiny().hparams.vocabSize;

  /** The picks a sampler draws one evaluate() at a time from `first` on top of ctx's cache. */
  async function stepwise(ctx: ModelContext, first: number, sampler: Sampler, history: number[], n: number): Promise<number[]> {
    const out: number[] = [];
    const seen = [...history];
    let tok = first;
    for (let i = 0; i < n; i++) {
      const { logits } = await ctx.evaluate([tok], [], { logits: 'last' });
      seen.push(tok);
      tok = sampler.sample(logits, seen);
      out.push(tok);
    }
    return out;
  }

  it("draws what the same sampler draws step by step, from the logits, and leaves it in that state", async () => {
    const a = await prompted('hovle-tiny');
    const b = await prompted('hovle-tiny');
    const history = [...goldenI32('hovle-tiny', textCase('hovle-tiny'), 'input_ids')].slice(-5);
    const sa = new Sampler({ ...options, seed: 5 }, V());
    const sb = new Sampler({ ...options, seed: 5 }, V());
    const picks = await take(a.ctx.decode(a.first, { maxSteps: 14, sampler: sa, history }), 14);
    const steps = await stepwise(b.ctx, b.first, sb, history, 14);
    expect(picks).toEqual(steps);
    expect(sa.state).toBe(sb.state);
    // Sampled, not the greedy continuation.
    const g = await prompted('hovle-tiny');
    expect(picks).not.toEqual(await take(g.ctx.decode(g.first, { maxSteps: 14 }), 14));
    // The same cache: first and the 13 picks before the last.
    expect(a.ctx.cached.llm).toBe(b.ctx.cached.llm);
    expect(maxDiff(await stepLogits(a.ctx, [picks[13]!]), await stepLogits(b.ctx, [picks[13]!]))).toBeLessThan(1e-5);
    for (const c of [a, b, g]) c.ctx.dispose();
  });

  it("stopping early rolls back the cache and the sampler's stream to the picks taken", async () => {
    const ref = await prompted('hovle-tiny');
    const all = await stepwise(ref.ctx, ref.first, new Sampler({ ...options, seed: 9 }, V()), [], 6);
    const a = await prompted('hovle-tiny', 4096);
    const s = new Sampler({ ...options, seed: 9 }, V());
    const run = a.ctx.decode(a.first, { maxSteps: 4000, sampler: s });
    expect(await take(run, 3)).toEqual(all.slice(0, 3));
    expect(a.ctx.cached.llm).toBe(a.base + 3);
    // The loop had run ahead; the sampler goes on from the third pick, as if it had drawn it.
    expect(await stepwise(a.ctx, all[2]!, s, [a.first, ...all.slice(0, 2)], 3)).toEqual(all.slice(3, 6));
    for (const c of [ref, a]) c.ctx.dispose();
  });

  it('refuses a foreign sampler or history, and reports a draw with nothing left to draw', async () => {
    const a = await prompted('hovle-tiny');
    expect(() => a.ctx.decode(a.first, { maxSteps: 2, sampler: new Sampler({ temperature: 1 }, V() + 1) })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => a.ctx.decode(a.first, { maxSteps: 2, sampler: {} as Sampler })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => a.ctx.decode(a.first, { maxSteps: 2, sampler: new Sampler({ temperature: 1 }, V()), history: [V()] })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(a.ctx.cached.llm).toBe(a.base);
    // Every token banned: the step evaluates `first` (as evaluate() would), then the draw fails.
    const banAll = Object.fromEntries(Array.from({ length: V() }, (_, i) => [i, -Infinity]));
    const run = a.ctx.decode(a.first, { maxSteps: 3, sampler: new Sampler({ temperature: 1, logitBias: banAll }, V()) });
    await expect(run.next()).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(a.ctx.cached.llm).toBe(a.base + 1);
    expect((await a.ctx.evaluate([a.first], [], { logits: 'last', greedy: true })).argmax!.length).toBe(1);
    a.ctx.dispose();
  });
});
