// hovle serve through the official `openai` client (and raw fetch where the client would hide
// the HTTP details): answers equal to Session's own, streaming, images as data: URLs, errors in
// OpenAI's shape, the API key, the queue's 429, client disconnects and graceful shutdown.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { convertCheckpoint } from '../src/convert/convert.js';
import { HovleModel } from '../src/runtime/model.js';
import { createServer, type HovleServer, type ServerOptions } from '../src/server/server.js';
import { Session } from '../src/session/session.js';
import { ASSISTANT_START, END_OF_TURN, systemTurn, USER_START } from '../src/session/template.js';
import { FIXTURES, tempDir, TINY } from './helpers/tmp.js';

const dir = tempDir('serve');
const fjord = readFileSync(join(FIXTURES, 'images', 'fjord.jpg'));
const fjordUrl = `data:image/jpeg;base64,${fjord.toString('base64')}`;
const SESSION = { contextSize: 2048 };
let model: HovleModel;
const servers: HovleServer[] = [];

async function start(options: ServerOptions = {}): Promise<{ server: HovleServer; base: string }> {
  const server = createServer(model, { modelName: 'tiny', session: SESSION, maxTiles: 1, ...options });
  servers.push(server);
  const { port } = await server.listen(0);
  return { server, base: `http://127.0.0.1:${port}` };
}

const client = (base: string, apiKey = 'none') => new OpenAI({ baseURL: `${base}/v1`, apiKey, maxRetries: 0 });

function post(base: string, body: unknown, init: RequestInit = {}): Promise<Response> {
  return fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ...init,
  });
}

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; !cond(); i++) {
    if (i > 2000) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A request that runs until the context is full unless stopped: the end-of-turn token is banned. */
const endless = () => ({
  model: 'tiny',
  messages: [{ role: 'user', content: 'Tell me a long story.' }],
  stream: true,
  logit_bias: { [String(model.vocab.eotId)]: -100 },
});

const question: OpenAI.ChatCompletionCreateParamsNonStreaming = {
  model: 'tiny',
  messages: [{ role: 'user', content: [{ type: 'text', text: 'Describe the image.' }, { type: 'image_url', image_url: { url: fjordUrl } }] }],
  temperature: 0,
  max_tokens: 12,
};

beforeAll(async () => {
  const path = join(dir, 'tiny.gguf');
  await convertCheckpoint(TINY, path, { type: 'f32' });
  model = await HovleModel.load(path);
});
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close({ timeoutMs: 0 })));
  model?.dispose();
});

describe('chat completions with the openai client', () => {
  let base: string;
  beforeAll(async () => void ({ base } = await start()));

  it('an image as a data: URL gets the answer Session.ask gives, with its token counts', async () => {
    const r = await client(base).chat.completions.create(question);
    const s = await Session.create(model, SESSION);
    const direct = await s.ask({ text: 'Describe the image.', images: [{ buffer: fjord }] }, { temperature: 0, maxTokens: 12, maxTiles: 1 });
    s.dispose();
    expect(r.object).toBe('chat.completion');
    expect(r.model).toBe('tiny');
    expect(r.choices[0]!.message).toMatchObject({ role: 'assistant', content: direct.text });
    expect(r.choices[0]!.finish_reason).toBe(direct.stopReason === 'maxTokens' ? 'length' : 'stop');
    expect(r.usage).toEqual({
      prompt_tokens: direct.stats.promptTokens,
      completion_tokens: direct.tokens.length,
      total_tokens: direct.stats.promptTokens + direct.tokens.length,
    });
    expect(direct.stats.promptTokens).toBeGreaterThan(256); // the image is in the prompt

    // Streaming: the deltas add up to the same text; the usage chunk comes last.
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const c of await client(base).chat.completions.create({ ...question, stream: true, stream_options: { include_usage: true } })) chunks.push(c);
    expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe(direct.text);
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0]!.id)).toBe(true);
    expect(chunks.at(-2)!.choices[0]!.finish_reason).toBe(r.choices[0]!.finish_reason);
    expect(chunks.at(-1)!.choices).toEqual([]);
    expect(chunks.at(-1)!.usage).toEqual(r.usage);
  });

  it('system and earlier turns go through the chat template', async () => {
    const messages = [
      { role: 'system' as const, content: 'You are terse.' },
      { role: 'user' as const, content: 'Hi' },
      { role: 'assistant' as const, content: 'Hello there.' },
      { role: 'user' as const, content: 'What now?' },
    ];
    const r = await client(base).chat.completions.create({ model: 'tiny', messages, max_completion_tokens: 6 });
    const s = await Session.create(model, { ...SESSION, system: 'You are terse.' });
    const past = await s.appendExchange('Hi', 'Hello there.');
    const direct = await s.ask('What now?', { maxTokens: 6 });
    s.dispose();
    const replayed = systemTurn('You are terse.') + USER_START + 'Hi' + END_OF_TURN + ASSISTANT_START + 'Hello there.';
    expect(past.promptTokens).toBe(model.tokenizer.encode(replayed, { addBos: true }).length);
    expect(r.choices[0]!.message.content).toBe(direct.text);
    expect(r.usage!.prompt_tokens).toBe(past.promptTokens + direct.stats.promptTokens);
  });

  it('without max_tokens, temperature 0 generates until the model stops (as Session.ask does)', async () => {
    // The server asks for Number.MAX_SAFE_INTEGER tokens then; the greedy run is bounded by the
    // context's room instead (it once refused that many steps).
    const r = await client(base).chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'What is this?' }], temperature: 0 });
    const s = await Session.create(model, SESSION);
    const direct = await s.ask('What is this?', { maxTokens: 1000 });
    s.dispose();
    expect(direct.stopReason).toBe('eos');
    expect(r.choices[0]!.finish_reason).toBe('stop');
    expect(r.choices[0]!.message.content).toBe(direct.text);
  });

  it('/v1/models lists the model; /health reports ready', async () => {
    const list = await client(base).models.list();
    expect(list.data.map((m) => m.id)).toEqual(['tiny']);
    expect((await client(base).models.retrieve('tiny')).id).toBe('tiny');
    const health = await fetch(`${base}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok', model: 'tiny', running: 0, queued: 0 });
  });

  it('refuses bad requests with 400 and an OpenAI error object', async () => {
    const bad = async (body: unknown) => {
      const res = await post(base, body);
      expect(res.status).toBe(400);
      return ((await res.json()) as { error: { message: string; type: string; param: string | null; code: string | null } }).error;
    };
    expect(await bad('{"model": "tiny", "messages": [')).toMatchObject({ type: 'invalid_request_error', code: 'invalid_json' });
    const withImage = (url: string) => ({ model: 'tiny', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url } }] }] });
    expect(await bad(withImage('data:image/png;base64,@@not base64@@'))).toMatchObject({ code: 'invalid_image_url', param: 'messages[0].content[0].image_url.url' });
    expect(await bad(withImage('data:image/png;base64,aGVsbG8gd29ybGQ='))).toMatchObject({ code: 'IMAGE_INVALID' });
    expect(await bad(withImage('https://example.com/cat.jpg'))).toMatchObject({ code: 'image_url_unsupported' });
    expect(await bad(withImage('/etc/passwd'))).toMatchObject({ code: 'local_files_disabled' });
    expect(await bad({ model: 'tiny', messages: [{ role: 'user', content: 'x' }], logprobs: true })).toMatchObject({ code: 'unsupported_parameter', param: 'logprobs' });
    expect(await bad({ model: 'tiny', messages: [{ role: 'user', content: 'x' }], temperature: 3 })).toMatchObject({ param: 'temperature' });
    expect(await bad({ model: 'tiny', messages: [{ role: 'assistant', content: 'x' }] })).toMatchObject({ param: 'messages[0]' });
    // The client surfaces the same refusals as its typed errors.
    const err = await client(base).chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'x' }], n: 2 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(err).toMatchObject({ status: 400, param: 'n', code: 'unsupported_parameter' });
  });
});

describe('limits, slots and shutdown', () => {
  it('requires the API key when one is set (401 for the client), not for /health', async () => {
    const { base } = await start({ apiKey: 'sesame' });
    const err = await client(base, 'wrong').models.list().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((await fetch(`${base}/v1/models`)).status).toBe(401);
    expect((await client(base, 'sesame').models.list()).data[0]!.id).toBe('tiny');
    expect((await fetch(`${base}/health`)).status).toBe(200);
  });

  it('a body over --max-body is 413', async () => {
    const { base } = await start({ maxBodyBytes: 16 * 1024 });
    const res = await post(base, { model: 'tiny', messages: [{ role: 'user', content: 'x'.repeat(64 * 1024) }] });
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('request_too_large');
  });

  it('local paths only inside --allow-local-files; image count and pixel limits', async () => {
    const { base } = await start({ allowLocalFiles: join(FIXTURES, 'images'), maxImages: 1, maxImagePixels: 210_000 });
    const ask = (...urls: string[]) =>
      post(base, { model: 'tiny', messages: [{ role: 'user', content: urls.map((url) => ({ type: 'image_url', image_url: { url } })) }], max_tokens: 1 });
    const code = async (res: Response) => ((await res.json()) as { error?: { code: string } }).error?.code;
    expect((await ask('fjord.jpg')).status).toBe(200); // 550x368, relative to the directory
    expect(await code(await ask(join(FIXTURES, 'images', 'gradient.png')))).toBe('IMAGE_TOO_LARGE'); // 701x333
    expect(await code(await ask('../hovle-tiny/hf/config.json'))).toBe('local_file_forbidden');
    expect(await code(await ask('file:///etc/passwd'))).toBe('local_file_forbidden');
    expect(await code(await ask('fjord.jpg', 'fjord.jpg'))).toBe('too_many_images');
  });

  it('answers 503 until the model has loaded', async () => {
    const server = createServer(new Promise<HovleModel>(() => {}), { modelName: 'tiny' });
    servers.push(server);
    const { port } = await server.listen(0);
    const health = await fetch(`http://127.0.0.1:${port}/health`);
    expect([health.status, await health.json()]).toMatchObject([503, { status: 'loading' }]);
    const res = await post(`http://127.0.0.1:${port}`, question);
    expect([res.status, await res.json()]).toMatchObject([503, { error: { code: 'model_not_ready' } }]);
  });

  it('with one slot and a queue of one, extra requests get 429; a client leaving mid-stream frees its slot', async () => {
    const { server, base } = await start({ parallel: 1, queue: 1 });
    const leaving = new AbortController();
    const long = await post(base, endless(), { signal: leaving.signal });
    expect(long.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = long.body!.getReader();
    await reader.read(); // generating now, and holding the only slot
    expect(server.status()).toMatchObject({ running: 1, queued: 0 });

    const settled: Response[] = [];
    const others = [0, 1, 2].map(() =>
      post(base, { model: 'tiny', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3 }).then((res) => {
        settled.push(res);
        return res;
      }),
    );
    await until(() => settled.length === 2);
    expect(settled.map((r) => r.status)).toEqual([429, 429]);
    expect(settled[0]!.headers.get('retry-after')).toBe('1');
    expect(await settled[0]!.json()).toMatchObject({ error: { type: 'rate_limit_error', code: 'queue_full' } });
    expect(server.status()).toMatchObject({ running: 1, queued: 1 });

    leaving.abort(); // it would otherwise generate until the context is full
    const served = (await Promise.all(others)).find((r) => r.status === 200)!;
    expect(((await served.json()) as OpenAI.ChatCompletion).usage!.completion_tokens).toBeLessThanOrEqual(3);
    await until(() => server.status().running === 0);
    const again = await client(base).chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 });
    expect(again.choices[0]!.message.content).toBeTypeOf('string');
  });

  it('close() lets a running answer finish, then stops listening', async () => {
    const { server, base } = await start();
    const answer = client(base).chat.completions.create({
      model: 'tiny',
      messages: [{ role: 'user', content: 'Count.' }],
      max_tokens: 40,
      logit_bias: { [String(model.vocab.eotId)]: -100 },
    });
    await until(() => server.status().running === 1);
    const closed = server.close({ timeoutMs: 20_000 });
    expect(server.status().state).toBe('closing');
    const r = await answer;
    expect(r.choices[0]!.finish_reason).toBe('length');
    expect(r.usage!.completion_tokens).toBe(40);
    await closed;
    expect(server.status().state).toBe('closed');
    await expect(fetch(`${base}/health`)).rejects.toThrow();
  });

  it('close() past its timeout ends a running stream with a shutting_down error event', async () => {
    const { server, base } = await start();
    const res = await post(base, endless());
    const reader = res.body!.getReader();
    await reader.read();
    await server.close({ timeoutMs: 50 });
    let text = '';
    for (let r = await reader.read(); !r.done; r = await reader.read()) text += new TextDecoder().decode(r.value);
    expect(text).toContain('"code":"shutting_down"');
  });
});
