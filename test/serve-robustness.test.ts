// hovle serve against hostile and unlucky clients: malformed JSON of every kind, oversized
// bodies and images, a body that trickles in, a stream nobody reads, bursts far beyond the
// queue, clients leaving mid-stream. Through all of it the server stays up, its slots come back,
// and the clients that behave get the answers Session.ask gives. (The basics of each, with the
// openai client: serve.test.ts.)
import { readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { convertCheckpoint } from '../src/convert/convert.js';
import { HovleModel } from '../src/runtime/model.js';
import { runCompletion } from '../src/server/completion.js';
import { jsonDepth } from '../src/server/http.js';
import { createServer, type HovleServer, type ServerOptions } from '../src/server/server.js';
import { Session } from '../src/session/session.js';
import { grayPng } from './helpers/image-files.js';
import { FIXTURES, tempDir, TINY } from './helpers/tmp.js';

const dir = tempDir('serve-robust');
// One thread: on a busy machine a multi-threaded tiny model spends its time in barriers.
const SESSION = { contextSize: 2048, threads: 1 };
const fjordUrl = `data:image/jpeg;base64,${readFileSync(join(FIXTURES, 'images', 'fjord.jpg')).toString('base64')}`;
let model: HovleModel;
const servers: HovleServer[] = [];

async function start(options: ServerOptions = {}): Promise<{ server: HovleServer; base: string; port: number; log: string[] }> {
  const log: string[] = [];
  const server = createServer(model, { modelName: 'tiny', session: SESSION, maxTiles: 1, log: (l) => log.push(l), ...options });
  servers.push(server);
  const { port } = await server.listen(0);
  return { server, base: `http://127.0.0.1:${port}`, port, log };
}

function post(base: string, body: unknown, init: RequestInit = {}): Promise<Response> {
  return fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body),
    ...init,
  });
}

async function until(cond: () => boolean, ms = 30_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const errorOf = async (res: Response) => ((await res.json()) as { error: { code: string | null; param: string | null; message: string } }).error;

/** The text a streamed answer adds up to, from raw SSE. */
async function streamedText(res: Response): Promise<string> {
  const raw = await res.text();
  let text = '';
  for (const line of raw.split('\n')) {
    if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
    const ev = JSON.parse(line.slice(6)) as { choices?: Array<{ delta?: { content?: string } }>; error?: unknown };
    if (ev.error) throw new Error(`stream error ${JSON.stringify(ev.error)}`);
    text += ev.choices?.[0]?.delta?.content ?? '';
  }
  return text;
}

/** Session.ask's greedy answer: what a well-behaved request must get. */
async function reference(text: string, maxTokens: number, images: string[] = []): Promise<string> {
  const s = await Session.create(model, SESSION);
  const r = await s.ask({ text, images: images.map((url) => ({ buffer: Buffer.from(url.slice(url.indexOf(',') + 1), 'base64') })) }, { maxTokens, maxTiles: 1 });
  s.dispose();
  return r.text;
}

const ask = (text: string, maxTokens: number, extra: Record<string, unknown> = {}) => ({
  model: 'tiny',
  messages: [{ role: 'user', content: text }],
  max_tokens: maxTokens,
  ...extra,
});

/** Runs until the context is full unless stopped: the end-of-turn token is banned. */
const endless = () => ask('Tell me a long story.', 100_000, { stream: true, logit_bias: { [String(model.vocab.eotId)]: -100 } });

/** A raw HTTP/1.1 request on its own socket: for clients no fetch() can imitate. */
function rawRequest(port: number, body: string, { sendBody = true, contentLength = Buffer.byteLength(body) } = {}): Socket {
  const socket = connect(port, '127.0.0.1');
  socket.write(
    `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${contentLength}\r\n\r\n` + (sendBody ? body : ''),
  );
  return socket;
}

function responseOf(socket: Socket): Promise<string> {
  return new Promise((resolve) => {
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (data += d));
    socket.on('close', () => resolve(data));
    socket.on('error', () => undefined);
  });
}

/** A PNG that declares width x height (grey, all zero): small to send, huge to decode. */
function bigPng(width: number, height: number): Buffer {
  return grayPng(width, height, () => 0, Math.min(height, 64)); // a few rows are enough: the size is refused first
}

beforeAll(async () => {
  const path = join(dir, 'tiny.gguf');
  await convertCheckpoint(TINY, path, { type: 'f32' });
  model = await HovleModel.load(path);
}, 120_000);
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close({ timeoutMs: 0 })));
  model?.dispose();
});

describe('malformed requests', () => {
  it('every kind of broken JSON is a 400 naming the problem; the server answers the next request', async () => {
    const { server, base } = await start();
    const cases: Array<[string | Uint8Array, string | null, string | null]> = [
      // [body, error code, param]
      ['', 'invalid_json', null],
      ['{', 'invalid_json', null],
      ['{"model": "tiny", "messages": [{"role": "user", "content": "hi"}', 'invalid_json', null],
      ['{"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}}', 'invalid_json', null],
      ['{"model": "tiny", "messages": [{"role": "user", "content": "\\ud800 unpaired \\x"}]}', 'invalid_json', null],
      [Uint8Array.from([0x7b, 0xff, 0xfe, 0x7d]), 'invalid_json', null],
      ['null', 'invalid_value', null],
      ['[]', 'invalid_value', null],
      ['"chat"', 'invalid_value', null],
      ['42', 'invalid_value', null],
      ['[' .repeat(1_000_000) + ']'.repeat(1_000_000), 'invalid_json', null],
      [`{"model": "tiny", "messages": ${'['.repeat(200)}${']'.repeat(200)}}`, 'invalid_json', null],
      // Keys that name Object.prototype's members must not find them.
      ['{"__proto__": {"polluted": 1}, "model": "tiny", "messages": [{"role": "user", "content": "hi"}]}', 'unknown_parameter', '__proto__'],
      ['{"constructor": 1, "model": "tiny", "messages": [{"role": "user", "content": "hi"}]}', 'unknown_parameter', 'constructor'],
      ['{"toString": 1, "model": "tiny", "messages": [{"role": "user", "content": "hi"}]}', 'unknown_parameter', 'toString'],
      ['{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "logit_bias": {"__proto__": 1}}', 'invalid_value', 'logit_bias'],
    ];
    const typed: Array<[Record<string, unknown>, string]> = [
      [{ model: 5, messages: [{ role: 'user', content: 'x' }] }, 'model'],
      [{ model: 'tiny', messages: {} }, 'messages'],
      [{ model: 'tiny', messages: ['hello'] }, 'messages[0]'],
      [{ model: 'tiny', messages: [{ role: 5, content: 'x' }] }, 'messages[0].role'],
      [{ model: 'tiny', messages: [{ role: 'user', content: 5 }] }, 'messages[0].content'],
      [{ model: 'tiny', messages: [{ role: 'user', content: { text: 'x' } }] }, 'messages[0].content'],
      [{ model: 'tiny', messages: [{ role: 'user', content: [null] }] }, 'messages[0].content[0]'],
      [{ model: 'tiny', messages: [{ role: 'user', content: [{ type: 'text', text: 7 }] }] }, 'messages[0].content[0]'],
      [{ model: 'tiny', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: 'x' }] }] }, 'messages[0].content[0].image_url'],
      [{ model: 'tiny', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 5 } }] }] }, 'messages[0].content[0].image_url'],
      [{ model: 'tiny', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: fjordUrl, detail: 3 } }] }] }, 'messages[0].content[0].image_url.detail'],
      [{ model: 'tiny', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,' } }] }] }, 'messages[0].content[0].image_url.url'],
      [ask('x', 1, { stop: [1] }), 'stop'],
      [ask('x', 1, { stop: '' }), 'stop'],
      [ask('x', 1, { logit_bias: [1] }), 'logit_bias'],
      [ask('x', 1, { logit_bias: { x: 1 } }), 'logit_bias'],
      [ask('x', 1, { logit_bias: { '5': 'a' } }), 'logit_bias'],
      [ask('x', 1, { logit_bias: { '5': 1e9 } }), 'logit_bias'],
      [ask('x', 1, { max_tokens: '5' }), 'max_tokens'],
      [ask('x', 1, { max_tokens: 1.5 }), 'max_tokens'],
      [ask('x', 1, { temperature: 'hot' }), 'temperature'],
      [ask('x', 1, { repeat_penalty: 0 }), 'repeat_penalty'],
      [ask('x', 1, { seed: 1e300 }), 'seed'],
      [ask('x', 1, { stream: 'yes' }), 'stream'],
      [ask('x', 1, { stream_options: 5 }), 'stream_options'],
      [ask('x', 1, { max_tiles: 0 }), 'max_tiles'],
    ];
    for (const [body, code, param] of cases) {
      const res = await post(base, body);
      const label = typeof body === 'string' ? body.slice(0, 60) : 'bytes';
      expect(res.status, label).toBe(400);
      expect(await errorOf(res), label).toMatchObject({ code, param });
    }
    for (const [body, param] of typed) {
      const res = await post(base, body);
      expect(res.status, param).toBe(400);
      expect((await errorOf(res)).param, JSON.stringify(body).slice(0, 80)).toBe(param);
    }
    // A token id the vocabulary does not have, as OpenAI does.
    const oov = await post(base, ask('x', 1, { logit_bias: { '99999999': 5 } }));
    expect([oov.status, (await errorOf(oov)).param]).toEqual([400, 'logit_bias']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(server.status()).toMatchObject({ state: 'ready', running: 0, queued: 0 });
    expect((await post(base, ask('Hi', 2))).status).toBe(200);
  });

  it('JSON nesting is measured without parsing, strings skipped', () => {
    const enc = (s: string) => new TextEncoder().encode(s);
    expect(jsonDepth(enc('{"a": [1, {"b": []}]}'), 64)).toBe(4);
    expect(jsonDepth(enc('{"a": "[[[[{{{{\\"[[["}'), 64)).toBe(1);
    expect(jsonDepth(enc('['.repeat(100)), 64)).toBe(65);
    expect(jsonDepth(enc('"unterminated [[['), 64)).toBe(0);
  });
});

describe('oversized input', () => {
  it('bodies over the limit are 413, announced or chunked; images too large for their pixels or bytes are 400', async () => {
    const { server, base, port } = await start({ maxBodyBytes: 1024 * 1024 });
    const big = JSON.stringify(ask('x'.repeat(2 * 1024 * 1024), 1));
    expect((await post(base, big)).status).toBe(413);
    // Chunked, with no Content-Length to refuse it up front: cut off when the limit is passed.
    const socket = connect(port, '127.0.0.1');
    const reply = responseOf(socket);
    socket.write('POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n');
    const piece = ' '.repeat(64 * 1024);
    for (let i = 0; i < 40 && !socket.destroyed; i++) socket.write(`${piece.length.toString(16)}\r\n${piece}\r\n`);
    expect(await reply).toMatch(/^HTTP\/1\.1 413[^]*"code":"request_too_large"/);
    // An image that declares 9000 x 9000 pixels in a few kB: refused before decoding.
    const bomb = `data:image/png;base64,${bigPng(9000, 9000).toString('base64')}`;
    const r1 = await post(base, { model: 'tiny', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: bomb } }] }] });
    expect([r1.status, (await errorOf(r1)).code]).toEqual([400, 'IMAGE_TOO_LARGE']);
    // 700 kB of bytes that are no image.
    const junk = `data:image/jpeg;base64,${Buffer.alloc(700_000, 0xab).toString('base64')}`;
    const r2 = await post(base, { model: 'tiny', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: junk } }] }] });
    expect([r2.status, (await errorOf(r2)).code]).toEqual([400, 'IMAGE_INVALID']);
    expect(server.status()).toMatchObject({ running: 0, queued: 0 });
    expect((await post(base, ask('Hi', 2))).status).toBe(200);
  });

  it('a prompt megabytes over the context is refused from its length, without tokenizing it', async () => {
    const { base } = await start({ maxBodyBytes: 64 * 1024 * 1024 });
    const res = await post(base, ask('many words '.repeat(2_000_000), 1)); // 22 MB
    expect(res.status).toBe(400);
    const err = await errorOf(res);
    expect(err.code).toBe('CONTEXT_FULL');
    // "at least": the refusal of the length pre-check, which counts characters instead of
    // tokenizing 22 MB (seconds of work).
    expect(err.message).toMatch(/needs at least \d+ positions/);
    expect((await post(base, ask('Hi', 2))).status).toBe(200);
  });
});

describe('slow clients', () => {
  it('a body that trickles in is cut off with 408, and holds nothing', async () => {
    const { server, base, port } = await start({ bodyTimeoutMs: 400 });
    const body = JSON.stringify(ask('Hi', 2));
    // Half a body, then silence.
    const stalled = rawRequest(port, body.slice(0, 10), { contentLength: Buffer.byteLength(body) });
    const stalledReply = responseOf(stalled);
    // A byte every 100 ms: never idle for long, but never done in time.
    const drip = rawRequest(port, '', { sendBody: false, contentLength: Buffer.byteLength(body) });
    const dripReply = responseOf(drip);
    let k = 0;
    const timer = setInterval(() => {
      if (!drip.destroyed && k < body.length) drip.write(body[k++]!);
    }, 100);
    // Meanwhile a normal client is served.
    expect((await post(base, ask('Hi', 2))).status).toBe(200);
    for (const reply of [await stalledReply, await dripReply]) {
      expect(reply).toMatch(/^HTTP\/1\.1 408/);
      expect(reply).toContain('"code":"request_timeout"');
    }
    clearInterval(timer);
    expect(k).toBeLessThan(body.length);
    expect(server.status()).toMatchObject({ running: 0, queued: 0 });
  });

  it('a stream nobody reads does not disturb the other slot', async () => {
    // (Loopback's socket buffers take megabytes, more than a context of tokens: the response's
    // own backpressure is checked on a response that never drains, below.)
    const { server, base, port } = await start({ parallel: 2 });
    const silent = rawRequest(port, JSON.stringify(endless()));
    silent.pause();
    await until(() => server.status().running === 1);
    const expected = await reference('Describe a fjord.', 24);
    for (let i = 0; i < 3; i++) {
      const res = await post(base, ask('Describe a fjord.', 24, { stream: true }));
      expect(await streamedText(res)).toBe(expected);
    }
    silent.destroy();
    await until(() => server.status().running === 0);
    expect((await post(base, ask('Hi', 2))).status).toBe(200);
  }, 120_000);

  it('backpressure: generation waits while a response buffers, and a client that never drains is dropped', async () => {
    const events: string[] = [];
    let writes = 0;
    // A response whose client takes `take` bytes every `every` ms (never, with every = 0).
    const response = (every: number) => {
      const w = new Writable({
        highWaterMark: 256,
        write(chunk: Buffer, _enc, done) {
          events.push(chunk.toString());
          if (every) setTimeout(done, every);
          // else: the client never takes it, done is never called
        },
      });
      const write = w.write.bind(w) as (chunk: string) => boolean;
      return Object.assign(w, {
        writeHead: () => w,
        flushHeaders: () => undefined,
        headersSent: true,
        write: (chunk: string) => (writes++, write(chunk)),
      });
    };
    const job = (res: Writable, writeTimeoutMs: number) =>
      runCompletion(res as unknown as ServerResponse, {
        model,
        modelName: 'tiny',
        session: SESSION,
        conversation: { history: [], prompt: { text: 'Tell me a long story.' } },
        generation: { maxTokens: 40, temperature: 0, logitBias: { [model.vocab.eotId]: -Infinity } },
        stream: true,
        includeUsage: false,
        writeTimeoutMs,
        signal: new AbortController().signal,
      });
    // A slow reader gets every token, in order; no more than one event waits past the mark.
    const slow = response(5);
    const expected = await reference('Tell me a long story.', 40);
    let maxBuffered = 0;
    const watch = setInterval(() => (maxBuffered = Math.max(maxBuffered, slow.writableLength)), 1);
    const done = await job(slow, 5_000);
    clearInterval(watch);
    expect(done).toMatchObject({ completionTokens: 40, finishReason: 'length' });
    const text = events.filter((e) => e.startsWith('data: {')).map((e) => (JSON.parse(e.slice(6)) as { choices: Array<{ delta: { content?: string } }> }).choices[0]!.delta.content ?? '').join('');
    expect(text).toBe(expected);
    expect(maxBuffered).toBeLessThan(256 + 400);
    // A reader that never takes anything: the generation stops at the mark, then gives up.
    events.length = 0;
    writes = 0;
    const stuck = response(0);
    const err = await job(stuck, 300).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'client_stalled' });
    expect(stuck.destroyed).toBe(true);
    // Only the events until the buffer passed its mark were produced, not 40 tokens' worth.
    expect(writes).toBeLessThan(6);
  });
});

describe('bursts and disconnects', () => {
  it('50 requests at once against 2 slots and a queue of 4: each is answered or gets 429; answers are right', async () => {
    const { server, base } = await start({ parallel: 2, queue: 4 });
    const expectedText = await reference('What is a fjord?', 6);
    const expectedImage = await reference('Describe the image.', 6, [fjordUrl]);
    const requests = Array.from({ length: 50 }, (_, i) => {
      const image = i % 5 === 0;
      const body = image
        ? { model: 'tiny', messages: [{ role: 'user', content: [{ type: 'text', text: 'Describe the image.' }, { type: 'image_url', image_url: { url: fjordUrl } }] }], max_tokens: 6 }
        : ask('What is a fjord?', 6, { stream: i % 2 === 1 });
      const stream = 'stream' in body && body.stream === true;
      return post(base, body).then(async (res) => {
        if (res.status === 429) {
          expect(res.headers.get('retry-after')).toBe('1');
          expect((await errorOf(res)).code).toBe('queue_full');
          return 429;
        }
        expect(res.status).toBe(200);
        const text = stream ? await streamedText(res) : ((await res.json()) as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content;
        expect(text).toBe(image ? expectedImage : expectedText);
        return 200;
      });
    });
    const statuses = await Promise.all(requests);
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(6);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(0);
    expect(server.status()).toMatchObject({ state: 'ready', running: 0, queued: 0 });
    expect((await post(base, ask('Hi', 2))).status).toBe(200);
  }, 180_000);

  it('clients leaving mid-stream, mid-queue and mid-upload do not disturb the streams around them', async () => {
    const { server, base, port } = await start({ parallel: 3, queue: 4 });
    const expected = await reference('Describe a fjord.', 20);
    for (let round = 0; round < 3; round++) {
      const good = [0, 1].map(() => post(base, ask('Describe a fjord.', 20, { stream: true })).then(streamedText));
      // Leaves after its first event.
      const leaving = new AbortController();
      const leaver = post(base, endless(), { signal: leaving.signal }).then(async (res) => {
        await res.body!.getReader().read();
        leaving.abort();
      });
      // Waits in the queue behind the others, then gives up.
      const impatient = new AbortController();
      const waiting = post(base, ask('Hi', 4), { signal: impatient.signal }).catch(() => undefined);
      setTimeout(() => impatient.abort(), 20);
      // Hangs up halfway through sending its body.
      const half = rawRequest(port, JSON.stringify(ask('Hi', 2)).slice(0, 20), { contentLength: 200 });
      setTimeout(() => half.destroy(), 30);
      await leaver.catch(() => undefined);
      expect(await Promise.all(good)).toEqual([expected, expected]);
      await waiting;
    }
    await until(() => server.status().running === 0 && server.status().queued === 0);
    expect((await post(base, ask('Hi', 2))).status).toBe(200);
  }, 180_000);
});

describe('shutdown', () => {
  // The body and write timeouts are set far past the test's own timeout: close() must not wait
  // them out.
  const patient = { bodyTimeoutMs: 600_000, writeTimeoutMs: 600_000 };

  it('does not wait for a body still on its way: the uploader gets 503 at once', async () => {
    const { server, port } = await start(patient);
    const socket = rawRequest(port, JSON.stringify(ask('Hi', 2)).slice(0, 10), { contentLength: 1000 });
    const reply = responseOf(socket);
    await until(() => server.status().state === 'ready');
    await new Promise((r) => setTimeout(r, 100)); // the request is being read
    await server.close({ timeoutMs: 0 });
    expect(await reply).toMatch(/^HTTP\/1\.1 503/);
  });

  it('does not wait for a stream whose client stopped reading', async () => {
    // A long model name makes every event ~60 KB, so the socket buffers fill within a few tokens.
    const { server, port, log } = await start({ ...patient, modelName: 'm'.repeat(60_000) });
    const socket = rawRequest(port, JSON.stringify(endless()));
    let got = 0;
    socket.on('data', (d: Buffer) => {
      got += d.length;
      if (got > 100_000) socket.pause(); // and never read again
    });
    socket.on('error', () => undefined);
    await until(() => got > 100_000);
    await new Promise((r) => setTimeout(r, 300)); // the server's buffers fill behind it
    await server.close({ timeoutMs: 0 });
    expect(log.join('\n')).toMatch(/aborted \(shutting_down\)/);
    socket.destroy();
  });
});

describe('request details', () => {
  it('a percent-encoded data: URL is the same image as its base64 form', async () => {
    const { base } = await start();
    const bytes = readFileSync(join(FIXTURES, 'images', 'fjord.jpg'));
    const pct = `data:image/jpeg,${[...bytes].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('')}`;
    const body = (url: string) => ({
      model: 'tiny', max_tokens: 4, messages: [{ role: 'user', content: [{ type: 'text', text: 'What is it?' }, { type: 'image_url', image_url: { url } }] }],
    });
    const answer = async (url: string) => {
      const res = await post(base, body(url));
      expect(res.status).toBe(200);
      return ((await res.json()) as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content;
    };
    expect(await answer(pct)).toBe(await answer(fjordUrl));
    expect((await errorOf(await post(base, body('data:image/jpeg,%zz')))).code).toBe('invalid_image_url');
  });

  it('a logit_bias favouring the image-context token is the client\'s mistake: 400 naming logit_bias', async () => {
    const { base } = await start();
    const res = await post(base, ask('Hi', 2, { logit_bias: { [String(model.vocab.imageContextId)]: 100 } }));
    expect(res.status).toBe(400);
    expect((await errorOf(res)).param).toBe('logit_bias');
    // Banning it is fine.
    expect((await post(base, ask('Hi', 2, { logit_bias: { [String(model.vocab.imageContextId)]: -100 } }))).status).toBe(200);
  });

  it('thousands of image messages are refused at the first image over the limit', async () => {
    const { base } = await start({ maxImages: 2 });
    const messages = Array.from({ length: 20_000 }, () => ({ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }] }));
    const res = await post(base, { model: 'tiny', messages });
    expect(res.status).toBe(400);
    expect(await errorOf(res)).toMatchObject({ code: 'too_many_images', message: expect.stringMatching(/more than 2 images/) });
  });
});
