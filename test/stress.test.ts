// Concurrency under churn: 16 sessions on one model, hundreds of asks (text, images, raw frames
// and forks of a prefilled image), with seeded random aborts and disposes at random points of
// generation. Every answer that completes equals the one a sequential run gives; every abort is
// ABORTED and every dispose DISPOSED; afterwards the model still answers as before. (Memory and
// handle stability over a long run: scripts/soak.mjs.)
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { convertCheckpoint } from '../src/convert/convert.js';
import { HovleError } from '../src/errors.js';
import type { ImageInput } from '../src/image/preprocess.js';
import { HovleModel } from '../src/runtime/model.js';
import { Session, type AskOptions } from '../src/session/session.js';
import { FIXTURES, tempDir, TINY } from './helpers/tmp.js';

const dir = tempDir('stress');
const LANES = 16;
const ITERATIONS = 25; // per lane: 400 asks in all
// One thread: the model's calls run one at a time anyway, and on a busy machine a
// multi-threaded tiny model spends its time in barriers.
const SESSION = { contextSize: 1024, threads: 1 };
const MAX_TOKENS = 16;
let model: HovleModel;
let base: Session; // an image prefilled once; fork questions branch from it

function frame(width: number, height: number): ImageInput {
  const data = Buffer.alloc(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37 + (i >> 7)) & 0xff;
  return { raw: { data, width, height, format: 'rgb' } };
}

interface Question {
  name: string;
  text: string;
  images: ImageInput[];
  maxTiles?: number;
  /** Asked on a fork of `base` instead of a fresh session. */
  fork?: boolean;
}

const QUESTIONS: Question[] = [
  { name: 'text', text: 'Hello, who are you?', images: [] },
  { name: 'text2', text: 'Describe a fjord in one sentence.', images: [] },
  { name: 'fjord', text: 'What is in this picture?', images: [join(FIXTURES, 'images', 'fjord.jpg')], maxTiles: 1 },
  { name: 'gradient', text: 'Which colours?', images: [join(FIXTURES, 'images', 'gradient.png')], maxTiles: 1 },
  { name: 'frame', text: 'Any people here?', images: [frame(320, 240)], maxTiles: 1 },
  { name: 'fork-a', text: 'What is the weather like?', images: [], fork: true },
  { name: 'fork-b', text: 'Count the boats.', images: [], fork: true },
];

interface Reference {
  tokens: number[];
  /** onToken calls during generation: an abort or dispose at any but the last is seen. */
  pieces: number;
}
const references = new Map<string, Reference>();

/** mulberry32: the same sequence of decisions on every run. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function open(q: Question): Promise<Session> {
  return q.fork ? base.fork() : Session.create(model, SESSION);
}

function ask(s: Session, q: Question, options: AskOptions = {}) {
  return s.ask({ text: q.text, images: q.images }, { maxTokens: MAX_TOKENS, ...(q.maxTiles ? { maxTiles: q.maxTiles } : {}), ...options });
}

beforeAll(async () => {
  const path = join(dir, 'tiny-q8_0.gguf');
  await convertCheckpoint(TINY, path, { type: 'q8_0' });
  model = await HovleModel.load(path);
  base = await Session.create(model, SESSION);
  await base.prefill({ text: '<image>\n', images: [join(FIXTURES, 'images', 'board.jpg')] }, { maxTiles: 1 });
  // The references, one at a time.
  for (const q of QUESTIONS) {
    const s = await open(q);
    let pieces = 0;
    const r = await ask(s, q, { onToken: () => pieces++ });
    s.dispose();
    references.set(q.name, { tokens: r.tokens, pieces });
  }
}, 120_000);
afterAll(() => {
  base?.dispose();
  model?.dispose();
});

type Outcome = 'completed' | 'aborted' | 'disposed';

describe(`${LANES} sessions on one model`, () => {
  it(`${LANES * ITERATIONS} asks with random aborts and disposes match the sequential answers`, async () => {
    expect([...references.values()].every((r) => r.pieces >= 2)).toBe(true);
    const counts: Record<string, number> = {};
    const count = (k: string) => void (counts[k] = (counts[k] ?? 0) + 1);

    const lane = async (id: number) => {
      const random = rng(1000 + id);
      for (let i = 0; i < ITERATIONS; i++) {
        const q = QUESTIONS[Math.floor(random() * QUESTIONS.length)]!;
        const ref = references.get(q.name)!;
        const roll = random();
        // At the k-th piece, k below the last: generation goes on, so it sees the abort/dispose.
        const k = 1 + Math.floor(random() * (ref.pieces - 1));
        const s = await open(q);
        let expected: Outcome = 'completed';
        let result: Promise<{ tokens: number[] }>;
        if (roll < 0.5) {
          result = ask(s, q);
        } else if (roll < 0.65) {
          expected = 'aborted';
          const controller = new AbortController();
          let seen = 0;
          result = ask(s, q, { signal: controller.signal, onToken: () => void (++seen === k && controller.abort()) });
        } else if (roll < 0.75) {
          // Aborted while the image is preprocessed or the prompt prefilled.
          expected = 'aborted';
          const controller = new AbortController();
          result = ask(s, q, { signal: controller.signal });
          controller.abort();
        } else if (roll < 0.9) {
          expected = 'disposed';
          let seen = 0;
          result = ask(s, q, { onToken: () => void (++seen === k && s.dispose()) });
        } else {
          expected = 'disposed';
          result = ask(s, q);
          s.dispose();
        }
        let outcome: Outcome;
        try {
          const r = await result;
          expect(r.tokens, `${q.name} (lane ${id}, iteration ${i})`).toEqual(ref.tokens);
          outcome = 'completed';
        } catch (err) {
          if (!(err instanceof HovleError)) throw err;
          outcome = err.code === 'ABORTED' ? 'aborted' : err.code === 'DISPOSED' ? 'disposed' : ((() => { throw err; })() as never);
        }
        expect(outcome, `${q.name} (lane ${id}, iteration ${i})`).toBe(expected);
        count(outcome);
        count(q.fork ? 'fork' : q.images.length ? 'image' : 'text');
        // A session that was aborted (not disposed) is still usable; most are disposed here,
        // some are left to the next step of the lane to dispose late.
        if (outcome === 'aborted' && random() < 0.3) {
          const again = await s.ask('And now?', { maxTokens: 2 });
          expect(again.tokens.length).toBeGreaterThan(0);
        }
        s.dispose();
      }
    };
    await Promise.all(Array.from({ length: LANES }, (_, id) => lane(id)));
    console.log(`stress: ${LANES} lanes x ${ITERATIONS} iterations:`, counts);
    expect(counts.completed! + counts.aborted! + counts.disposed!).toBe(LANES * ITERATIONS);
    expect(counts.completed).toBeGreaterThan(LANES * ITERATIONS * 0.3);
    expect(counts.aborted).toBeGreaterThan(10);
    expect(counts.disposed).toBeGreaterThan(10);

    // All sessions are gone; fresh ones answer as before, fresh forks too.
    for (const q of QUESTIONS) {
      const s = await open(q);
      expect((await ask(s, q)).tokens).toEqual(references.get(q.name)!.tokens);
      s.dispose();
    }
  }, 300_000); // ~20 s on 2 cores

  it('disposing the model while 16 sessions generate: they finish or fail typed, nothing crashes', async () => {
    const m = await HovleModel.load(model.path);
    const sessions = await Promise.all(Array.from({ length: LANES }, () => Session.create(m, SESSION)));
    const q = QUESTIONS[2]!; // an image
    const answers = sessions.map((s) => ask(s, q).then((r) => r.tokens, (e: unknown) => e));
    await new Promise((r) => setTimeout(r, 5));
    m.dispose();
    for (const a of await Promise.all(answers)) {
      if (Array.isArray(a)) expect(a).toEqual(references.get(q.name)!.tokens);
      else expect(a).toBeInstanceOf(HovleError);
    }
    await expect(Session.create(m, SESSION)).rejects.toMatchObject({ code: 'DISPOSED' });
    for (const s of sessions) s.dispose();
  });
});

describe('worker threads terminated mid-call', () => {
  // A worker terminated while its evaluate() ran: V8 freed the worker's arrays under the model
  // thread (SIGSEGV writing the logits buffer), and its model, context and thread were never
  // freed; one terminated as a call settled aborted the process (creating the result threw out
  // of the settle callback). Run in a child process, so a crash fails this test, not the run.
  it.runIf(process.platform === 'linux')('the process survives, and the workers\' models and threads go with them', async () => {
    const { spawnSync } = await import('node:child_process');
    const { fileURLToPath } = await import('node:url');
    const path = join(dir, 'worker.gguf');
    await convertCheckpoint(TINY, path, { type: 'f32' });
    const script = fileURLToPath(new URL('./helpers/worker-terminate.mjs', import.meta.url));
    for (const [mode, rounds] of [['long', '6'], ['loop', '20']]) {
      const r = spawnSync(process.execPath, [script, path, rounds!, mode!], { encoding: 'utf8', timeout: 120_000 });
      expect(r.status, `${mode}: ${r.stderr}`).toBe(0);
      const { before, after } = JSON.parse(r.stdout) as { before: number; after: number };
      // libuv's pool may start a thread or two on the way; leaked model threads would show.
      expect(after - before, mode).toBeLessThanOrEqual(2);
    }
  }, 180_000);
});
