// The conversation API on the tiny models: the reference's greedy continuations through
// ask() (template, tokenizer, image pipeline and KV cache together), streaming, sampling,
// abort, stop strings, follow-up turns and concurrent sessions.
import { basename, join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';

import { parseGrounding } from '../src/session/grounding.js';
import { DecodeRun } from '../src/runtime/decode-run.js';
import { Sampler } from '../src/runtime/sampler.js';
import { Session, type AskOptions } from '../src/session/session.js';
import { ASSISTANT_START, END_OF_TURN, systemTurn, USER_START } from '../src/session/template.js';
import { goldenCases, type Variant } from './helpers/golden.js';
import { tinyF32Models } from './helpers/tiny-models.js';
import { FIXTURES } from './helpers/tmp.js';

const models = tinyF32Models('session');

/** Asks for a long story and aborts at its third piece: ABORTED, after exactly three pieces. */
async function abortAtThirdPiece(s: Session, options: AskOptions = {}): Promise<void> {
  const controller = new AbortController();
  let seen = 0;
  await expect(
    s.ask('Tell me a long story.', { maxTokens: 200, ...options, signal: controller.signal, onToken: () => { if (++seen === 3) controller.abort(); } }),
  ).rejects.toMatchObject({ code: 'ABORTED' });
  expect(seen).toBe(3);
}

function question(variant: Variant, name: string) {
  const c = goldenCases(variant).find((x) => x.name === name)! as ReturnType<typeof goldenCases>[number] & { question: string };
  const images = c.image ? [join(FIXTURES, 'images', basename(c.image))] : [];
  const expected = c.greedy!.ids.filter((t) => t !== c.greedy!.eos_id);
  return { c, images, expected };
}

describe('ask() reproduces the reference greedy continuations', () => {
  for (const variant of ['hovle-tiny', 'hovle-tiny-post'] as const) {
    for (const name of ['fjord_max1_en', 'gradient_max6_en', 'text_only_en']) {
      it(`${variant} ${name}`, async () => {
        const { c, images, expected } = question(variant, name);
        const s = await Session.create(models[variant]!, { contextSize: 4096, kvType: 'f32' });
        const r = await s.ask({ text: c.question, images }, { maxTokens: 16, maxTiles: c.maxTiles ?? undefined });
        expect(r.tokens).toEqual(expected);
        expect(r.stopReason).toBe(c.greedy!.ids.includes(c.greedy!.eos_id) ? 'eos' : 'maxTokens');
        expect(r.stats.promptTokens).toBe(c.seqLen);
        expect(r.stats.generatedTokens).toBe(expected.length);
        expect(r.text).toBe(models[variant]!.tokenizer.decode(expected));
        s.dispose();
      });
    }
  }
});

describe('greedy picks on the device and from the logits agree', () => {
  // ask() at temperature 0 takes its pick in the graph (evaluate's greedy); any bias or penalty
  // reads each step's logits back and picks with the sampler (native/sampler.cpp). A zero bias
  // changes nothing but the path.
  for (const variant of ['hovle-tiny', 'hovle-tiny-post'] as const) {
    it(`${variant} fjord_max1_en, picked from the logits`, async () => {
      const { c, images, expected } = question(variant, 'fjord_max1_en');
      const s = await Session.create(models[variant]!, { contextSize: 4096, kvType: 'f32' });
      const r = await s.ask({ text: c.question, images }, { maxTokens: 16, maxTiles: c.maxTiles ?? undefined, logitBias: { 5: 0 } });
      expect(r.tokens).toEqual(expected);
      s.dispose();
    });
  }

  it('device picks leave the same cache as picks from the logits: at maxTokens, at a stop string, at eos', async () => {
    // The answer runs on the model's thread ahead of the JS loop (ModelContext.decode); what it
    // made past the point the loop stopped is rolled back. The cache holds what one evaluate()
    // per token would have left: every answer token at maxTokens and eos (the last one is
    // evaluated for the next turn); at a stop string, the answer's text and no more.
    const m = models['hovle-tiny']!;
    const answer = async (fromLogits: boolean, question: string, o: { maxTokens: number; stop?: string[] }) => {
      const s = await Session.create(m, { kvType: 'f32' });
      const r = await s.ask(question, { ...o, ...(fromLogits ? { logitBias: { 5: 0 } } : {}) });
      const left = s.cachedTokens - r.stats.promptTokens;
      // The follow-up turn sees whatever the first one left cached.
      const next = await s.ask('Go on', { maxTokens: 6, ...(fromLogits ? { logitBias: { 5: 0 } } : {}) });
      const out = { tokens: r.tokens, text: r.text, reason: r.stopReason, left, cached: s.cachedTokens, next: next.tokens };
      s.dispose();
      return out;
    };
    const free = await answer(false, 'Hello', { maxTokens: 12 });
    expect(free.reason).toBe('maxTokens');
    expect(free.left).toBe(12);
    expect(await answer(true, 'Hello', { maxTokens: 12 })).toEqual(free);
    const text = m.tokenizer.decode(free.tokens);
    const cut = await answer(false, 'Hello', { maxTokens: 12, stop: [text.slice(4, 6)] });
    expect(cut.reason).toBe('stop');
    expect(cut.text).toBe(text.slice(0, 4));
    // The cache holds the answer's text, not the stop string's start that ended it: the next
    // turn goes as in a session that was handed the same exchange as text.
    const replay = await Session.create(m, { kvType: 'f32' });
    await replay.appendExchange('Hello', cut.text);
    expect((await replay.ask('Go on', { maxTokens: 6 })).tokens).toEqual(cut.next);
    replay.dispose();
    expect(await answer(true, 'Hello', { maxTokens: 12, stop: [text.slice(4, 6)] })).toEqual(cut);
    // This question's greedy answer ends at eos after 25 tokens.
    const device = await answer(false, 'What is this?', { maxTokens: 40 });
    expect(device.reason).toBe('eos');
    expect(device.left).toBe(device.tokens.length);
    expect(await answer(true, 'What is this?', { maxTokens: 40 })).toEqual(device);
    // No token limit (the server's default without max_tokens): the context's end stops it.
    const full = async (fromLogits: boolean) => {
      const s = await Session.create(m, { kvType: 'f32', contextSize: 140 });
      const r = await s.ask('Hello', { maxTokens: Number.MAX_SAFE_INTEGER, ...(fromLogits ? { logitBias: { 5: 0 } } : {}) });
      const out = { reason: r.stopReason, cached: s.cachedTokens, tokens: r.tokens };
      s.dispose();
      return out;
    };
    const filled = await full(false);
    expect(filled.reason).toBe('contextFull');
    expect(await full(true)).toEqual(filled);
  });

  it('greedy run: abort and dispose end the answer at once; the model carries on', async () => {
    const m = models['hovle-tiny']!;
    const s = await Session.create(m);
    await abortAtThirdPiece(s);
    // The same cache as the sampler's path aborted at the same token.
    const h = await Session.create(m);
    await abortAtThirdPiece(h, { logitBias: { 5: 0 } });
    expect(s.cachedTokens).toBe(h.cachedTokens);
    h.dispose();
    expect((await s.ask('And now?', { maxTokens: 4 })).tokens.length).toBeGreaterThan(0);
    s.dispose();
    const d = await Session.create(m);
    let n = 0;
    await expect(d.ask('Go on and on', { maxTokens: 100, onToken: () => { if (++n === 2) d.dispose(); } })).rejects.toMatchObject({ code: 'DISPOSED' });
    expect(n).toBe(2);
  });
});

describe('streaming, sampling, stopping', () => {
  it('streamed pieces concatenate to the final text', async () => {
    const m = models['hovle-tiny']!;
    const s = await Session.create(m);
    const gen = s.stream('Hello, who are you?', { maxTokens: 24, temperature: 0.8, seed: 7 });
    let streamed = '';
    let r;
    for (;;) {
      r = await gen.next();
      if (r.done) break;
      streamed += r.value;
    }
    expect(streamed).toBe(r.value.text);
    expect(r.value.tokens.length).toBeGreaterThan(0);
    s.dispose();
  });

  it('the same seed gives the same tokens, another seed others', async () => {
    const m = models['hovle-tiny']!;
    const run = async (seed: number) => {
      const s = await Session.create(m);
      const r = await s.ask('Describe a fjord.', { maxTokens: 20, temperature: 1, topK: 50, topP: 0.95, minP: 0.01, repeatPenalty: 1.1, seed });
      s.dispose();
      return r.tokens;
    };
    const a = await run(1);
    expect(await run(1)).toEqual(a);
    expect(await run(2)).not.toEqual(a);
  });

  it("a sampled answer is its sampler's draws step by step: the first from the prompt, the rest from the run", async () => {
    const m = models['hovle-tiny']!;
    const o = { temperature: 0.8, topK: 40, repeatPenalty: 1.2, seed: 21 };
    const s = await Session.create(m, { kvType: 'f32' });
    const r = await s.ask('Describe a fjord.', { maxTokens: 12, ...o });
    const cached = s.cachedTokens;
    s.dispose();
    // By hand: the same prompt (template.ts), the same sampler (the session's never draws the
    // image-context id), one evaluate() per token.
    const ids = m.tokenizer.encode(systemTurn(m.hparams.chat.systemMessage) + USER_START + 'Describe a fjord.' + END_OF_TURN + ASSISTANT_START, { addBos: true });
    const ctx = await m.createContext({ kvType: 'f32' });
    const sampler = new Sampler({ ...o, logitBias: { [m.vocab.imageContextId]: -Infinity } }, m.hparams.vocabSize);
    let { logits } = await ctx.evaluate(ids, [], { logits: 'last' });
    const want: number[] = [];
    for (;;) {
      const tok = sampler.sample(logits, want);
      if (tok === m.vocab.eotId) break;
      want.push(tok);
      // The answer's last token is evaluated too (cached for the next turn).
      logits = (await ctx.evaluate([tok], [], { logits: 'last' })).logits;
      if (want.length === 12) break;
    }
    expect(r.tokens).toEqual(want);
    expect(cached).toBe(ctx.cached.llm);
    ctx.dispose();
  });

  it('an AbortSignal stops generation within one token; the session stays usable', async () => {
    const m = models['hovle-tiny']!;
    const s = await Session.create(m);
    await abortAtThirdPiece(s, { temperature: 1, seed: 3, logitBias: { 998: -Infinity } });
    const again = await s.ask('And now?', { maxTokens: 4 });
    expect(again.tokens.length).toBeGreaterThan(0);
    s.dispose();
  });

  it("an abort while the next pick is held up rejects at once; the session waits for the pick, and caches the same", async () => {
    // A pick held up stands for the model's thread busy with another session's prefill graph.
    const m = models['hovle-tiny']!;
    const story = 'Tell me a long story.';
    const baseline = await Session.create(m);
    const c1 = new AbortController();
    let n1 = 0;
    // Aborted in onToken: the loop sees it before it waits for the next pick.
    await expect(baseline.ask(story, { maxTokens: 40, signal: c1.signal, onToken: () => { if (++n1 === 2) c1.abort(); } })).rejects.toMatchObject({ code: 'ABORTED' });

    const s = await Session.create(m);
    const next = DecodeRun.prototype.next;
    let open!: () => void;
    const opened = new Promise<void>((r) => (open = r));
    let hold = false;
    let isOpen = false;
    const spy = vi.spyOn(DecodeRun.prototype, 'next').mockImplementation(function (this: DecodeRun) {
      const r = next.call(this);
      return hold ? opened.then(() => r) : r;
    });
    try {
      const c2 = new AbortController();
      let n2 = 0;
      const onToken = () => {
        if (++n2 !== 2) return;
        hold = true;
        setTimeout(() => c2.abort(), 5);
      };
      await expect(s.ask(story, { maxTokens: 40, signal: c2.signal, onToken })).rejects.toMatchObject({ code: 'ABORTED' });
      expect(isOpen).toBe(false);
      expect(n2).toBe(n1);
      // What the cache will hold once the run has closed: the prompt and every token emitted.
      expect(s.cachedTokens).toBe(baseline.cachedTokens);
      let settled = false;
      const follow = s.ask('And now?', { maxTokens: 4 }).finally(() => (settled = true));
      await new Promise((r) => setTimeout(r, 30));
      expect(settled).toBe(false); // still held by the aborted answer's run
      isOpen = true;
      open();
      const a = await follow;
      const b = await baseline.ask('And now?', { maxTokens: 4 });
      expect(a.tokens).toEqual(b.tokens);
      expect(s.cachedTokens).toBe(baseline.cachedTokens);
    } finally {
      open();
      spy.mockRestore();
    }
    s.dispose();
    baseline.dispose();
  });

  it('an abort from the piece that fills the context does not end that finished answer as aborted', async () => {
    const m = models['hovle-tiny']!;
    const ref = await Session.create(m, { contextSize: 160 });
    let pieces = 0;
    const full = await ref.ask('Tell me a long story.', { maxTokens: 200, onToken: () => void pieces++ });
    expect(full.stopReason).toBe('contextFull');
    // The run's close is held up: a finished answer waits for it (an aborted one would not).
    const ret = DecodeRun.prototype.return;
    let open!: () => void;
    const opened = new Promise<void>((r) => (open = r));
    const spy = vi.spyOn(DecodeRun.prototype, 'return').mockImplementation(function (this: DecodeRun) {
      return opened.then(() => ret.call(this));
    });
    try {
      const s = await Session.create(m, { contextSize: 160 });
      const controller = new AbortController();
      let n = 0;
      const onToken = () => {
        if (++n === pieces) controller.abort();
      };
      let settled = false;
      const asked = s.ask('Tell me a long story.', { maxTokens: 200, signal: controller.signal, onToken }).finally(() => (settled = true));
      await new Promise((r) => setTimeout(r, 30));
      expect(settled).toBe(false);
      open();
      const r = await asked;
      expect(r.stopReason).toBe('contextFull');
      expect(r.tokens).toEqual(full.tokens);
      expect(s.cachedTokens).toBe(ref.cachedTokens);
      s.dispose();
    } finally {
      open();
      spy.mockRestore();
    }
    ref.dispose();
  });

  it('stop strings cut the answer before them; logit bias bans tokens', async () => {
    const m = models['hovle-tiny']!;
    const s = await Session.create(m);
    const free = await s.ask('Hello', { maxTokens: 16, logitBias: { 998: -Infinity } });
    s.dispose();
    expect(free.text.length).toBeGreaterThan(4);
    const stop = free.text.slice(2, 4);
    const s2 = await Session.create(m);
    const cut = await s2.ask('Hello', { maxTokens: 16, logitBias: { 998: -Infinity }, stop: [stop] });
    expect(cut.stopReason).toBe('stop');
    expect(cut.text).toBe(free.text.slice(0, free.text.indexOf(stop)));
    s2.dispose();
  });

  it('a follow-up turn reuses the cached image instead of recomputing it', async () => {
    const m = models['hovle-tiny']!;
    const s = await Session.create(m);
    const first = await s.ask({ text: 'What is this?', images: [join(FIXTURES, 'images', 'gradient.png')] }, { maxTokens: 4, maxTiles: 6 });
    const cached = s.cachedTokens;
    expect(cached).toBeGreaterThan(3 * 256);
    const second = await s.ask('And the colours?', { maxTokens: 4 });
    expect(second.stats.promptTokens).toBeLessThan(40); // only the new turn (21 tokens here), not the 3-tile image again
    expect(s.cachedTokens).toBeGreaterThan(cached);
    expect(first.images[0]!.tiles).toBe(3);
    s.dispose();
  });

  it('prefill + fork: one image prefill, several questions, each answered as if asked alone', async () => {
    const m = models['hovle-tiny']!;
    const { c, images, expected } = question('hovle-tiny', 'fjord_max1_en');
    const base = await Session.create(m, { kvType: 'f32' });
    const pre = await base.prefill({ text: '<image>\n', images }, { maxTiles: 1 });
    expect(pre.promptTokens).toBeGreaterThan(256);
    const a = await base.fork();
    const b = await base.fork();
    const ra = await a.ask(c.question.replace('<image>\n', ''), { maxTokens: 16 });
    expect(ra.tokens).toEqual(expected); // the reference continuation, image computed once
    expect(ra.stats.promptTokens).toBeLessThan(30);
    const rb = await b.ask('What colour is the sky?', { maxTokens: 6 });
    expect(rb.tokens.length).toBeGreaterThan(0);
    // The base is untouched by its branches and can still be asked.
    expect(base.cachedTokens).toBe(pre.promptTokens);
    const rbase = await base.ask(c.question.replace('<image>\n', ''), { maxTokens: 16 });
    expect(rbase.tokens).toEqual(expected);
    for (const s of [a, b, base]) s.dispose();
  });

  it('dispose during generation ends it with DISPOSED and frees nothing in use', async () => {
    const m = models['hovle-tiny']!;
    const s = await Session.create(m);
    const pending = s.ask('Go on and on', { maxTokens: 100, logitBias: { 998: -Infinity }, onToken: () => s.dispose() });
    await expect(pending).rejects.toMatchObject({ code: 'DISPOSED' });
    const t = await Session.create(m);
    expect((await t.ask('still fine?', { maxTokens: 2 })).tokens.length).toBe(2);
    t.dispose();
  });

  it('four concurrent sessions on one model give the same outputs as sequential runs', async () => {
    const m = models['hovle-tiny']!;
    const prompts = ['one', 'two words', 'three little words', 'and four of them'];
    const run = async (p: string) => {
      const s = await Session.create(m);
      const r = await s.ask(p, { maxTokens: 8, temperature: 0.7, seed: 11 });
      s.dispose();
      return r.tokens;
    };
    const sequential = [];
    for (const p of prompts) sequential.push(await run(p));
    expect(await Promise.all(prompts.map(run))).toEqual(sequential);
  });

  it('the event loop keeps turning while a session generates', async () => {
    const m = models['hovle-tiny']!;
    const s = await Session.create(m);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    await s.ask({ text: 'Describe', images: [join(FIXTURES, 'images', 'board.jpg')] }, { maxTokens: 8, maxTiles: 6 });
    clearInterval(timer);
    expect(ticks).toBeGreaterThan(5);
    s.dispose();
  });

  it('bad options and a prompt longer than the context are refused before any work', async () => {
    const m = models['hovle-tiny']!;
    const s = await Session.create(m, { contextSize: 128 });
    await expect(s.ask('x', { temperature: -1 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(s.ask({ text: 'look', images: [join(FIXTURES, 'images', 'fjord.jpg')] })).rejects.toMatchObject({ code: 'CONTEXT_FULL' });
    expect(s.cachedTokens).toBe(0);
    s.dispose();
    await expect(s.ask('x')).rejects.toMatchObject({ code: 'DISPOSED' });
  });

  it("a turn's pixels are freed once it is evaluated, or refused", async () => {
    const m = models['hovle-tiny']!;
    const made: Float32Array[] = [];
    const preprocess = m.preprocessImage.bind(m);
    const spy = vi.spyOn(m, 'preprocessImage').mockImplementation(async (...args) => {
      const r = await preprocess(...args);
      made.push(r.data);
      return r;
    });
    try {
      const s = await Session.create(m, { contextSize: 2048 });
      const board = join(FIXTURES, 'images', 'board.jpg');
      await s.ask({ text: 'Describe', images: [board] }, { maxTokens: 2, maxTiles: 2 });
      await s.prefill({ text: 'And this?', images: [board] }, { maxTiles: 2 });
      s.dispose();
      // Room for two images of one tile each, but the first has more: CONTEXT_FULL once its
      // tiles are known, and its pixels go too.
      const small = await Session.create(m, { contextSize: 600 });
      await expect(small.ask({ text: 'More', images: [board, board] }, { maxTiles: 6 })).rejects.toMatchObject({ code: 'CONTEXT_FULL' });
      small.dispose();
      expect(made.length).toBeGreaterThanOrEqual(3);
      expect(made.map((a) => a.length)).toEqual(made.map(() => 0));
    } finally {
      spy.mockRestore();
    }
  });
});

describe('one session, several calls', () => {
  it('asks made at once run one after another, as if awaited in turn', async () => {
    const m = models['hovle-tiny']!;
    const together = await Session.create(m);
    const [a, b] = await Promise.all([together.ask('one', { maxTokens: 4 }), together.ask('two', { maxTokens: 4 })]);
    const inTurn = await Session.create(m);
    expect([a.tokens, b.tokens]).toEqual([(await inTurn.ask('one', { maxTokens: 4 })).tokens, (await inTurn.ask('two', { maxTokens: 4 })).tokens]);
    expect(together.cachedTokens).toBe(inTurn.cachedTokens);
    together.dispose();
    inTurn.dispose();
  });

  it('a fork asked for during a stream is taken when the answer ends', async () => {
    const m = models['hovle-tiny']!;
    const s = await Session.create(m);
    let fork: Promise<Session> | undefined;
    for await (const _ of s.stream('Tell me more', { maxTokens: 12, stop: ['\n\n'] })) fork ??= s.fork();
    const f = await fork!;
    expect(f.cachedTokens).toBe(s.cachedTokens);
    expect((await f.ask('and?', { maxTokens: 4 })).tokens).toEqual((await s.ask('and?', { maxTokens: 4 })).tokens);
    f.dispose();
    s.dispose();
  });

  it('an abort during a long prefill stops it and leaves the cache as it was', async () => {
    const m = models['hovle-tiny']!;
    const s = await Session.create(m, { contextSize: 16384, batchSize: 64 });
    await s.ask('Hello', { maxTokens: 2 });
    const before = s.cachedTokens;
    const long = 'word '.repeat(4000); // ~12k tokens: about 190 micro-batches of 64
    for (const call of [(signal: AbortSignal) => s.ask(long, { signal, maxTokens: 4 }), (signal: AbortSignal) => s.prefill(long, { signal })]) {
      const controller = new AbortController();
      const pending = call(controller.signal);
      setTimeout(() => controller.abort(), 50);
      await expect(pending).rejects.toMatchObject({ code: 'ABORTED' });
      expect(s.cachedTokens).toBe(before);
    }
    const fresh = await Session.create(m);
    await fresh.ask('Hello', { maxTokens: 2 });
    expect((await s.ask('Again', { maxTokens: 4 })).tokens).toEqual((await fresh.ask('Again', { maxTokens: 4 })).tokens);
    fresh.dispose();
    s.dispose();
  });

  it('dispose during a prefill rejects it with DISPOSED', async () => {
    const s = await Session.create(models['hovle-tiny']!, { contextSize: 16384, batchSize: 64 });
    const pending = s.prefill('word '.repeat(4000));
    setTimeout(() => s.dispose(), 50);
    await expect(pending).rejects.toMatchObject({ code: 'DISPOSED' });
  });

  it('malformed messages and options are INVALID_ARGUMENT before any work', async () => {
    const s = await Session.create(models['hovle-tiny']!);
    const bad: Array<() => Promise<unknown>> = [
      () => s.ask(null as never), () => s.ask('x', null as never), () => s.prefill(null as never),
      () => s.ask({ text: 'x', images: 'a.jpg' as never }), () => s.ask('x', { signal: {} as never }),
      () => s.ask('x', { onToken: 5 as never }), () => Session.create(models['hovle-tiny']!, { system: 5 as never }),
    ];
    for (const call of bad) await expect(call()).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(s.cachedTokens).toBe(0);
    s.dispose();
  });

  it('without images <image> is plain text; the image-context token spelled as text is refused by name', async () => {
    const m = models['hovle-tiny']!;
    const s = await Session.create(m);
    // As the reference's chat(), which substitutes placeholders only when given pixels.
    const text = 'What does the HTML <image> element do?';
    const { promptTokens } = await s.prefill(text);
    expect(promptTokens).toBe(m.tokenizer.encode(systemTurn(s.system) + USER_START + text, { addBos: true }).length);
    const image = join(FIXTURES, 'images', 'fjord.jpg');
    await expect(s.ask({ text: '<image> or <image>?', images: [image] })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/2 <image> placeholders but 1 images/) });
    const spelled: Array<() => Promise<unknown>> = [
      () => s.ask('a <IMG_CONTEXT> b'), () => s.appendExchange('q', 'a <IMG_CONTEXT>'), () => Session.create(m, { system: 'x<IMG_CONTEXT>' }),
    ];
    for (const call of spelled) await expect(call()).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/contains the text <IMG_CONTEXT>/) });
    expect(s.cachedTokens).toBe(promptTokens);
    s.dispose();
  });

  it('a whitespace-only prompt too long for the context is refused from its length', async () => {
    const s = await Session.create(models['hovle-tiny']!, { contextSize: 256 });
    // "at least": the length check's refusal, before the text is tokenized.
    await expect(s.ask(' '.repeat(1_000_000))).rejects.toMatchObject({ code: 'CONTEXT_FULL', message: expect.stringMatching(/at least/) });
    await expect(s.ask('\n'.repeat(1_000_000))).rejects.toMatchObject({ code: 'CONTEXT_FULL', message: expect.stringMatching(/at least/) });
    s.dispose();
  });

  it('images that cannot fit are refused before they are decoded', async () => {
    const s = await Session.create(models['hovle-tiny']!, { contextSize: 1024 });
    const images = Array.from({ length: 8 }, () => join(FIXTURES, 'images', 'no-such-file.jpg'));
    // Eight images take at least eight tiles: refused before the first (missing) file is read.
    await expect(s.ask({ text: 'Compare', images })).rejects.toMatchObject({ code: 'CONTEXT_FULL', message: expect.stringMatching(/at least 2\d\d\d /) });
    s.dispose();
  });
});

describe('grounding', () => {
  it('an answer renders the grounding markup, and no other special token', async () => {
    const m = models['hovle-tiny']!;
    const id = (t: string) => m.vocab.tokens.indexOf(t);
    const s = await Session.create(m);
    for (const tag of ['<ref>', '</ref>', '<box>', '</box>', '<quad>', '</quad>']) {
      const r = await s.ask('Where?', { maxTokens: 1, logitBias: { [id(tag)]: 100 } });
      expect([r.tokens, r.text]).toEqual([[id(tag)], tag]);
    }
    const r = await s.ask('Where?', { maxTokens: 1, logitBias: { [id('<|action_start|>')]: 100 } });
    expect([r.tokens, r.text]).toEqual([[id('<|action_start|>')], '']);
    s.dispose();
  });

  it('parses <ref>/<box> answers into pixel boxes', () => {
    const boxes = parseGrounding('The <ref>red car</ref><box>[[100, 200, 500, 1000]]</box> and <ref>tree</ref><box>[[0,0,10,10],[990,990,1000,1000]]</box>', { width: 640, height: 480 });
    expect(boxes).toEqual([
      { label: 'red car', normalized: [100, 200, 500, 1000], box: [64, 96, 320, 480] },
      { label: 'tree', normalized: [0, 0, 10, 10], box: [0, 0, 6.4, 4.8] },
      { label: 'tree', normalized: [990, 990, 1000, 1000], box: [633.6, 475.2, 640, 480] },
    ]);
    expect(parseGrounding('<ref>x</ref><box>[[not json]]</box>', { width: 1, height: 1 })).toEqual([]);
  });
});
