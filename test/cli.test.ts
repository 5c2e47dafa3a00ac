import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { tempDir } from './helpers/tmp.js';

// Runs the built CLI (dist/), as users and scripts do; `npm test` builds dist first.
const cli = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));

function hovle(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('hovle CLI', () => {
  it('info --json lists the CPU backend and device', () => {
    const r = hovle(['info', '--json']);
    expect(r.code).toBe(0);
    const info = JSON.parse(r.stdout);
    expect(info.build.backends).toContain('cpu');
    expect(info.devices.some((d: { backend: string }) => d.backend === 'CPU')).toBe(true);
  });

  it('info prints a human table', () => {
    const r = hovle(['info']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^device\s+backend\s+type\s+free\s+total\s+description$/m);
    expect(r.stdout).toMatch(/^CPU\s+CPU\s+cpu\s/m);
    expect(r.stdout).toContain('CPU features:');
  });

  it('has --help for the tool and each command, and --version', () => {
    expect(hovle(['--help'])).toMatchObject({ code: 0, stdout: expect.stringContaining('info') });
    expect(hovle(['info', '--help'])).toMatchObject({ code: 0, stdout: expect.stringContaining('--json') });
    expect(hovle(['--version']).stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('exits 2 on usage errors', () => {
    expect(hovle([]).code).toBe(2);
    expect(hovle(['frobnicate']).code).toBe(2);
    const r = hovle(['info', '--bogus']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--bogus');
  });

  it('exits 1 with the fixing command when the addon is missing', () => {
    const r = hovle(['info'], { HOVLE_ADDON_PATH: '/nonexistent/hovle.node' });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('ADDON_NOT_BUILT');
    expect(r.stderr).toContain('npm rebuild hovle');
  });
});

describe('hovle convert / quantize', () => {
  const fixture = fileURLToPath(new URL('./fixtures/hovle-tiny/hf', import.meta.url));
  const dir = tempDir('cli');

  it('convert --json reports the file and per-tensor types; quantize re-types it', () => {
    const f16 = join(dir, 'm.gguf');
    const r = hovle(['convert', fixture, '-o', f16, '--type', 'f16', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ path: f16, type: 'f16', tensors: 46 });
    expect(j.tensorTypes['output_norm.weight']).toBe('f32');
    const q = hovle(['quantize', f16, join(dir, 'q.gguf'), 'q8_0', '--json']);
    expect(q.code, q.stderr).toBe(0);
    expect(JSON.parse(q.stdout).tensorTypes['blk.0.attn_q.weight']).toBe('q8_0');
  });

  it('usage errors exit 2, checkpoint errors exit 1 with the reason', () => {
    expect(hovle(['convert', fixture]).code).toBe(2);
    expect(hovle(['convert', fixture, '-o', join(dir, 'x.gguf'), '--type', 'q3_k']).code).toBe(2);
    expect(hovle(['quantize', 'a.gguf', 'b.gguf']).code).toBe(2);
    const r = hovle(['convert', dir, '-o', join(dir, 'x.gguf')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/config\.json.*CHECKPOINT_INVALID/s);
    expect(hovle(['convert', '--help'])).toMatchObject({ code: 0, stdout: expect.stringContaining('q4_k_m') });
    expect(hovle(['quantize', '--help'])).toMatchObject({ code: 0, stdout: expect.stringContaining('--allow-requantize') });
  });
});

describe('hovle eval', () => {
  const dir = tempDir('cli-eval');
  const fixture = fileURLToPath(new URL('./fixtures/hovle-tiny/hf', import.meta.url));
  const image = fileURLToPath(new URL('./fixtures/images/fjord.jpg', import.meta.url));

  it('writes raw float32 logits and hidden states that match the golden case', async () => {
    const { goldenCases, goldenF32, goldenI32 } = await import('./helpers/golden.js');
    const c = goldenCases('hovle-tiny').find((x) => x.name === 'fjord_max1_en')!;
    const model = join(dir, 'm.gguf');
    expect(hovle(['convert', fixture, '-o', model, '--type', 'f32']).code).toBe(0);
    const ids = join(dir, 'ids.json');
    writeFileSync(ids, JSON.stringify(Array.from(goldenI32('hovle-tiny', c, 'input_ids'))));
    const r = hovle(['eval', '--model', model, '--ids', ids, '--image', image, '--max-tiles', '1', '--logits', join(dir, 'l.f32'), '--hidden', join(dir, 'h.f32')]);
    expect(r.code, r.stderr).toBe(0);
    const logits = new Float32Array(readFileSync(join(dir, 'l.f32')).buffer.slice(0));
    const hidden = new Float32Array(readFileSync(join(dir, 'h.f32')).buffer.slice(0));
    expect(logits.length).toBe(398 * 1009);
    expect(hidden.length).toBe(398 * 64);
    const g = goldenF32('hovle-tiny', c, 'logits');
    let d = 0;
    for (let i = 0; i < g.length; i++) d = Math.max(d, Math.abs(g[i]! - logits[(398 - 8) * 1009 + i]!));
    expect(d).toBeLessThan(1e-3);
    const gh = goldenF32('hovle-tiny', c, 'embed_hidden');
    let dh = 0;
    for (let i = 0; i < gh.length; i++) dh = Math.max(dh, Math.abs(gh[i]! - hidden[i]!));
    expect(dh).toBeLessThan(1e-4);
  });

  it('every golden case, both modes, through the CLI with the images as files', async () => {
    const { goldenCases, goldenF32, goldenI32 } = await import('./helpers/golden.js');
    const { basename } = await import('node:path');
    for (const [variant, hfDir] of [['hovle-tiny', 'hovle-tiny'], ['hovle-tiny-post', 'hovle-tiny-post']] as const) {
      const model = join(dir, `${variant}-all.gguf`);
      expect(hovle(['convert', fileURLToPath(new URL(`./fixtures/${hfDir}/hf`, import.meta.url)), '-o', model, '--type', 'f32']).code).toBe(0);
      for (const c of goldenCases(variant)) {
        const ids = join(dir, `${variant}-${c.name}.json`);
        writeFileSync(ids, JSON.stringify(Array.from(goldenI32(variant, c, 'input_ids'))));
        const images = c.image ? ['--image', fileURLToPath(new URL(`./fixtures/images/${basename(c.image)}`, import.meta.url)), '--max-tiles', String(c.maxTiles)] : [];
        const out = join(dir, 'all.f32');
        const r = hovle(['eval', '--model', model, '--ids', ids, ...images, '--logits', out]);
        expect(r.code, `${variant} ${c.name}: ${r.stderr}`).toBe(0);
        const logits = new Float32Array(readFileSync(out).buffer.slice(0));
        const g = goldenF32(variant, c, 'logits');
        const rows = c.files.logits!.rows!;
        let d = 0;
        rows.forEach((p, k) => {
          for (let v = 0; v < 1009; v++) d = Math.max(d, Math.abs(g[k * 1009 + v]! - logits[p * 1009 + v]!));
        });
        const longest = Math.max(c.seqLen, c.hdSeqLen ?? 0);
        expect(d, `${variant} ${c.name}`).toBeLessThan(longest < 1500 ? 1e-3 : longest <= 4000 ? 3e-3 : 1e-2);
      }
    }
  }, 180_000);

  it('-m names the model; an unwritable output is a one-line IO_ERROR', () => {
    const dir = tempDir('cli-eval-io');
    const model = join(dir, 'm.gguf');
    expect(hovle(['convert', fileURLToPath(new URL('./fixtures/hovle-tiny/hf', import.meta.url)), '-o', model, '--type', 'f32']).code).toBe(0);
    const ids = join(dir, 'ids.json');
    writeFileSync(ids, JSON.stringify([1, 2, 3]));
    expect(hovle(['eval', '-m', model, '--ids', ids, '--logits', join(dir, 'l.f32')]).code).toBe(0);
    const r = hovle(['eval', '-m', model, '--ids', ids, '--logits', '/nonexistent/dir/l.f32']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot write \/nonexistent\/dir\/l\.f32.*\[IO_ERROR\]/);
    expect(r.stderr).not.toContain('internal error');
  });

  it('bad ids and image counts exit 1 with the reason; missing flags exit 2', () => {
    const model = join(dir, 'm.gguf');
    writeFileSync(join(dir, 'bad.json'), '{"not": "an array"}');
    const bad = hovle(['eval', '--model', model, '--ids', join(dir, 'bad.json'), '--logits', join(dir, 'x.f32')]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/JSON array of integers/);
    writeFileSync(join(dir, 'short.json'), '[1, 2, 3]');
    const noCtx = hovle(['eval', '--model', model, '--ids', join(dir, 'short.json'), '--image', image, '--logits', join(dir, 'x.f32')]);
    expect(noCtx.code).toBe(1);
    expect(noCtx.stderr).toMatch(/IMG_CONTEXT/);
    expect(hovle(['eval', '--model', model]).code).toBe(2);
    expect(hovle(['eval', '--help'])).toMatchObject({ code: 0, stdout: expect.stringContaining('--max-tiles') });
  });
});

describe('hovle ask', () => {
  it('answers with the reference greedy continuation (JSON) and streams the same text', async () => {
    const { goldenCases } = await import('./helpers/golden.js');
    const { HovleModel } = await import('../src/runtime/model.js');
    const dir = tempDir('cli-ask');
    const model = join(dir, 'm.gguf');
    expect(hovle(['convert', fileURLToPath(new URL('./fixtures/hovle-tiny/hf', import.meta.url)), '-o', model, '--type', 'f32']).code).toBe(0);
    const c = goldenCases('hovle-tiny').find((x) => x.name === 'fjord_max1_en')! as { greedy: { ids: number[]; eos_id: number } };
    const m = await HovleModel.load(model);
    const expected = m.tokenizer.decode(c.greedy.ids.filter((t) => t !== c.greedy.eos_id));
    m.dispose();
    const image = fileURLToPath(new URL('./fixtures/images/fjord.jpg', import.meta.url));
    const args = ['ask', '-m', model, '--image', image, '--max-tiles', '1', '-n', '16', '--kv-type', 'f32', 'Please describe the image shortly.'];
    const json = hovle([...args, '--json']);
    expect(json.code, json.stderr).toBe(0);
    const r = JSON.parse(json.stdout);
    expect(r.text).toBe(expected);
    const streamed = hovle(args);
    expect(streamed.code).toBe(0);
    expect(streamed.stdout).toBe(expected + '\n');
    expect(streamed.stderr).toMatch(/tokens, (eos|maxTokens)/);
  });

  it('a reader that closes the pipe early (| head) ends it quietly with 0', async () => {
    const { spawn } = await import('node:child_process');
    const dir = tempDir('cli-ask-pipe');
    const model = join(dir, 'm.gguf');
    expect(hovle(['convert', fileURLToPath(new URL('./fixtures/hovle-tiny/hf', import.meta.url)), '-o', model, '--type', 'f32']).code).toBe(0);
    const child = spawn(process.execPath, [cli, 'ask', '-m', model, '-q', '-n', '2000', '--temperature', '1', '--seed', '1', 'Tell me a long story.'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    // Like `head -c 5`: take the first bytes, then close the read end.
    child.stdout.once('data', () => child.stdout.destroy());
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(stderr).not.toMatch(/EPIPE|internal error/);
    expect(code).toBe(0);
  });

  it('bad sampling values and thread counts are usage errors (exit 2) before the model loads', () => {
    for (const flags of [['--top-p', '7'], ['--seed', '1.5'], ['--temperature', '-1'], ['--threads', '513']]) {
      const r = hovle(['ask', '-m', '/nonexistent/model.gguf', ...flags, 'hi']);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(flags[0]);
    }
  });

  it('usage errors exit 2', () => {
    expect(hovle(['ask', 'no model']).code).toBe(2);
    expect(hovle(['ask', '-m', 'x.gguf']).code).toBe(2);
    expect(hovle(['ask', '--help'])).toMatchObject({ code: 0, stdout: expect.stringContaining('--max-tokens') });
  });
});

describe('hovle chat', () => {
  const dir = tempDir('cli-chat');
  const model = join(dir, 'm.gguf');
  const image = fileURLToPath(new URL('./fixtures/images/fjord.jpg', import.meta.url));
  const chat = (input: string, args: string[] = []) => {
    const r = spawnSync(process.execPath, [cli, 'chat', '-m', model, '-n', '16', '--kv-type', 'f32', '--max-tiles', '1', '-q', ...args], { encoding: 'utf8', input });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };

  it('answers each piped line in one conversation; /image attaches, /reset forgets', async () => {
    expect(hovle(['convert', fileURLToPath(new URL('./fixtures/hovle-tiny/hf', import.meta.url)), '-o', model, '--type', 'f32']).code).toBe(0);
    const { goldenCases } = await import('./helpers/golden.js');
    const { HovleModel } = await import('../src/runtime/model.js');
    const { Session } = await import('../src/session/session.js');
    // The first turn is the golden fjord case (greedy); the second must equal a follow-up asked
    // through the API on the same conversation.
    const c = goldenCases('hovle-tiny').find((x) => x.name === 'fjord_max1_en')! as { greedy: { ids: number[]; eos_id: number } };
    const m = await HovleModel.load(model);
    const first = m.tokenizer.decode(c.greedy.ids.filter((t) => t !== c.greedy.eos_id));
    const s = await Session.create(m, { kvType: 'f32' });
    await s.ask({ text: 'Please describe the image shortly.', images: [image] }, { maxTokens: 16, maxTiles: 1 });
    const second = (await s.ask('And the colours?', { maxTokens: 16 })).text;
    const fresh = await Session.create(m, { kvType: 'f32' });
    const third = (await fresh.ask('And the colours?', { maxTokens: 16 })).text;
    s.dispose();
    fresh.dispose();
    m.dispose();

    const r = chat(`/image ${image}\nPlease describe the image shortly.\nAnd the colours?\n/reset\nAnd the colours?\n`);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${first}\n${second}\n${third}\n`);
    expect(r.stderr).toContain('[image 1 attached');
    expect(r.stderr).toContain('[conversation cleared]');
  });

  it('reports a bad image or command, keeps going, and exits 1 when reading a script', () => {
    const r = chat('/image /nonexistent.jpg\n/frobnicate\nHi\n/exit\nnot reached\n', ['--stats']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('cannot read /nonexistent.jpg');
    expect(r.stderr).toContain('unknown command /frobnicate');
    expect(r.stderr).toMatch(/tokens, (eos|maxTokens)/); // --stats after the one answer
    expect(r.stdout.split('\n').filter(Boolean).length).toBeLessThanOrEqual(1);
  });

  it('--help lists the in-chat commands; usage errors exit 2', () => {
    expect(hovle(['chat', '--help'])).toMatchObject({ code: 0, stdout: expect.stringContaining('/image FILE') });
    expect(hovle(['chat']).code).toBe(2);
    expect(hovle(['chat', '-m', model, '--kv-type', 'q4']).code).toBe(2);
    const noFlash = hovle(['chat', '-m', model, '--kv-type', 'q8_0', '--no-flash']);
    expect(noFlash.code).toBe(2);
    expect(noFlash.stderr).toContain('--kv-type q8_0 needs flash attention');
  });
});

describe('hovle bench', () => {
  it('refuses --ctx-size, which it cannot honour (it sizes each context itself)', () => {
    const r = hovle(['bench', '-m', '/nonexistent/model.gguf', '-c', '64']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--ctx-size does not apply');
  });

  it('measures a model and reports every figure as JSON', () => {
    const dir = tempDir('cli-bench');
    const model = join(dir, 'm.gguf');
    expect(hovle(['convert', fileURLToPath(new URL('./fixtures/hovle-tiny/hf', import.meta.url)), '-o', model, '--type', 'q8_0']).code).toBe(0);
    const r = hovle(['bench', '-m', model, '--json', '--reps', '1', '--prompts', '64', '--depths', '0,32', '--decode', '4', '--tiles', '1,2']);
    expect(r.code, r.stderr).toBe(0);
    const b = JSON.parse(r.stdout);
    expect(b.weightTypes.q8_0).toBeGreaterThan(0);
    expect(Object.keys(b.decodeTokensPerSecond)).toEqual(['0', '32']);
    expect(Object.keys(b.imageFrontEndMs)).toEqual(['1', '2']);
    expect(b.imagePrefill['1'].tokens).toBe(20 + 256 + 24);
    expect(Object.keys(b.imagePrefill)).toEqual(['1']);
    for (const s of [b.prefillTokensPerSecond['64'], b.decodeTokensPerSecond['32'], b.timeToFirstTokenMs, b.loadWarmMs]) {
      expect(s.runs).toBe(1);
      expect(s.median).toBeGreaterThan(0);
    }
    expect(b.peakRssBytes).toBeGreaterThan(b.fileBytes);
    // One context size for the measurements and the time-to-first-token session, with room for a
    // frame and a question: the KV cache in the RSS budget is then the largest one held.
    expect(b.kvBytes / b.kvBytesPerPosition).toBeGreaterThanOrEqual(1024);
    expect(hovle(['bench', '--help']).stdout).toContain('--depths');
    expect(hovle(['bench', '-m', model, '--depths', 'x']).code).toBe(2);
  });
});

describe('hovle serve / pull as processes', () => {
  it('serve listens, answers /health and a completion, and exits 0 on SIGTERM', async () => {
    const { spawn } = await import('node:child_process');
    const dir = tempDir('cli-serve');
    const model = join(dir, 'm.gguf');
    expect(hovle(['convert', fileURLToPath(new URL('./fixtures/hovle-tiny/hf', import.meta.url)), '-o', model, '--type', 'q8_0']).code).toBe(0);
    const child = spawn(process.execPath, [cli, 'serve', '-m', model, '--port', '0', '-q'], { stdio: ['ignore', 'ignore', 'pipe'] });
    // A failed expectation or a timeout must not leave the server running after the suite.
    try {
      let stderr = '';
      // serve listens while the model loads (/health answers 503 until then): wait for both lines.
      const url = await new Promise<string>((resolve, reject) => {
        child.stderr.on('data', (d: Buffer) => {
          stderr += d.toString();
          const m = /listening on (http:\/\/[^\s]+)/.exec(stderr);
          if (m && /hovle serve: model .* ready/.test(stderr)) resolve(m[1]!);
        });
        child.on('exit', (code) => reject(new Error(`serve exited ${code}: ${stderr}`)));
      });
      const health = await fetch(`${url}/health`);
      expect(health.status).toBe(200);
      const r = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4 }),
      });
      expect(r.status).toBe(200);
      expect(((await r.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBeGreaterThan(0);
      const exit = new Promise<number | null>((resolve) => child.on('exit', resolve));
      child.kill('SIGTERM');
      expect(await exit).toBe(0);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });

  it('serve on a port already taken exits 1 with a one-line IO_ERROR', async () => {
    const { createServer } = await import('node:net');
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      const dir = tempDir('cli-serve-busy');
      const model = join(dir, 'm.gguf');
      expect(hovle(['convert', fileURLToPath(new URL('./fixtures/hovle-tiny/hf', import.meta.url)), '-o', model, '--type', 'f32']).code).toBe(0);
      const { spawn } = await import('node:child_process');
      const child = spawn(process.execPath, [cli, 'serve', '-m', model, '--port', String(port), '-q'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      expect(code).toBe(1);
      expect(stderr).toMatch(/cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE.*\[IO_ERROR\]/);
      expect(stderr).not.toContain('internal error');
    } finally {
      blocker.close();
    }
  });

  it('serve and pull have --help and refuse bad flags with exit 2', () => {
    expect(hovle(['serve', '--help'])).toMatchObject({ code: 0, stdout: expect.stringContaining('--parallel') });
    expect(hovle(['pull', '--help'])).toMatchObject({ code: 0, stdout: expect.stringContaining('HF_ENDPOINT') });
    expect(hovle(['serve']).code).toBe(2);
    expect(hovle(['pull', 'not a repo']).code).toBe(2);
  });
});

describe('CommonJS consumers', () => {
  it('can require() the package and call it', () => {
    const root = fileURLToPath(new URL('..', import.meta.url));
    const script = `
      const hovle = require(${JSON.stringify(root)});
      hovle.systemInfo().then((i) => {
        const ok = i.devices.some((d) => d.backend === 'CPU') && new hovle.HovleError('INTERNAL', 'x') instanceof Error;
        process.stdout.write(ok ? 'ok' : 'bad');
      });`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('ok');
  });
});
