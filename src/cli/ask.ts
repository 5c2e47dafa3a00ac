import { parseArgs } from 'node:util';

import { loadModel, createSession } from '../api.js';
import type { Backend } from '../runtime/model.js';
import { EXIT, optionalPositiveInt, UsageError, type Command } from './command.js';
import { interruptSignal } from './progress.js';

const usage = `Usage: hovle ask -m MODEL.gguf [--image FILE]... [options] "question"

Answers one question (about the images, if any), streaming the answer to stdout.

Options:
  -m, --model FILE       HoVLE GGUF
  -i, --image FILE       image (JPEG, PNG, BMP, GIF); repeat for several
      --max-tiles N      tiles per image (default: the model's)
  -n, --max-tokens N     default 256
  -t, --temperature T    default 0 (greedy)
      --top-p P  --top-k K  --seed N
      --system TEXT      replace the default system message
      --backend NAME     cpu (default), vulkan, cuda, metal
      --gpu-layers N     decoder blocks on the device (default: all)
      --kv-type T        KV cache: f16 (default), f32 (closest to the reference), q8_0
      --json             print the answer and its stats as JSON instead of streaming
  -h, --help

Ctrl-C stops the answer (exit code 130).`;

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      model: { type: 'string', short: 'm' },
      image: { type: 'string', short: 'i', multiple: true, default: [] },
      'max-tiles': { type: 'string' },
      'max-tokens': { type: 'string', short: 'n' },
      temperature: { type: 'string', short: 't' },
      'top-p': { type: 'string' },
      'top-k': { type: 'string' },
      seed: { type: 'string' },
      system: { type: 'string' },
      backend: { type: 'string', default: 'cpu' },
      'gpu-layers': { type: 'string' },
      'kv-type': { type: 'string', default: 'f16' },
      json: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (!values.model) throw new UsageError('--model is required');
  if (positionals.length !== 1) throw new UsageError('expected exactly one question (quote it)');
  const num = (v: string | undefined, flag: string) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n)) throw new UsageError(`${flag} must be a number`);
    return n;
  };
  const gpuLayers = values['gpu-layers'] === undefined ? undefined : Number(values['gpu-layers']);
  const kvType = values['kv-type'];
  if (kvType !== 'f16' && kvType !== 'f32' && kvType !== 'q8_0') throw new UsageError('--kv-type must be f16, f32 or q8_0');
  const maxTiles = optionalPositiveInt(values['max-tiles'], '--max-tiles');
  const topK = optionalPositiveInt(values['top-k'], '--top-k');
  const model = await loadModel(values.model, { backend: values.backend as Backend, ...(gpuLayers !== undefined ? { gpuLayers } : {}) });
  const { signal, dispose } = interruptSignal();
  try {
    const session = await createSession(model, {
      kvType,
      ...(kvType === 'q8_0' ? { flashAttention: true } : {}),
      ...(values.system !== undefined ? { system: values.system } : {}),
    });
    const options = {
      maxTokens: optionalPositiveInt(values['max-tokens'], '--max-tokens') ?? 256,
      signal,
      ...(maxTiles !== undefined ? { maxTiles } : {}),
      ...(values.temperature !== undefined ? { temperature: num(values.temperature, '--temperature')! } : {}),
      ...(values['top-p'] !== undefined ? { topP: num(values['top-p'], '--top-p')! } : {}),
      ...(topK !== undefined ? { topK } : {}),
      ...(values.seed !== undefined ? { seed: num(values.seed, '--seed')! } : {}),
    };
    const message = { text: positionals[0]!, images: values.image };
    if (values.json) {
      const r = await session.ask(message, options);
      process.stdout.write(JSON.stringify({ text: r.text, stopReason: r.stopReason, tokens: r.tokens.length, stats: r.stats }, null, 2) + '\n');
    } else {
      const gen = session.stream(message, options);
      let r = await gen.next();
      while (!r.done) {
        process.stdout.write(r.value);
        r = await gen.next();
      }
      process.stdout.write('\n');
      const s = r.value.stats;
      process.stderr.write(
        `[${r.value.tokens.length} tokens, ${r.value.stopReason}; prompt ${s.promptTokens} tokens at ${s.prefillTokensPerSecond.toFixed(1)} tok/s, ` +
          `${s.decodeTokensPerSecond.toFixed(1)} tok/s generating, first token after ${Math.round(s.timeToFirstTokenMs)} ms]\n`,
      );
    }
    session.dispose();
    return EXIT.ok;
  } catch (err) {
    if ((err as { code?: string }).code === 'ABORTED') {
      process.stdout.write('\n');
      return 130;
    }
    throw err;
  } finally {
    dispose();
    model.dispose();
  }
}

export const askCommand: Command = { name: 'ask', summary: 'answer one question about images, streaming to stdout', usage, run };
