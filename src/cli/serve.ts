import { parseArgs } from 'node:util';

import type { HovleModel } from '../runtime/model.js';
import { createServer } from '../server/server.js';
import { defaultComputeThreads } from '../system-info.js';
import { EXIT, optionalPositiveInt, UsageError, type Command } from './command.js';
import { checkModelFlags, contextOptions, loadModelFromFlags, modelFlags, modelFlagsUsage } from './model-flags.js';

const usage = `Usage: hovle serve -m MODEL.gguf [--port 8080] [options]

An OpenAI Chat Completions compatible server: POST /v1/chat/completions (streaming or not,
images as data: URLs), GET /v1/models, GET /health. Any OpenAI client works with
baseURL http://HOST:PORT/v1.

Server options:
      --host ADDR            interface to listen on (default 127.0.0.1; 0.0.0.0 for all)
      --port N               default 8080; 0 picks a free port
      --alias NAME           model id in /v1/models (default: the GGUF's file name)
      --api-key KEY          require "Authorization: Bearer KEY" on /v1/* (default: $HOVLE_API_KEY)
      --parallel N           answers generated at once, each with its own KV cache (default 1)
      --queue N              requests waiting for a slot before 429s (default 8)
      --max-body SIZE        largest request body, e.g. 32M (default; images come base64-encoded)
      --max-images N         images per request (default 4)
      --max-pixels N         refuse larger images, e.g. 16M (default 64M)
      --max-tiles N          tiles per image, and the most a request's max_tiles may ask (default: the model's)
      --allow-local-files DIR  let image_url name files in DIR (default: data: URLs only)
      --shutdown-timeout S   on SIGINT/SIGTERM, seconds to let running answers finish (default 30)
  -h, --help

${modelFlagsUsage}
  (--threads defaults to the cores divided among --parallel)

http(s) image URLs are refused: the server never fetches from the network. Requests default
to temperature 0 (greedy, as hovle ask) unless they set one. A first Ctrl-C stops accepting
requests and finishes those running; a second exits at once.`;

const SUFFIX: Record<string, number> = { '': 1, k: 1e3, m: 1e6, g: 1e9, ki: 1024, mi: 1024 ** 2, gi: 1024 ** 3 };

/** "32M" style sizes; `binary` makes K/M/G powers of 1024 (bytes), otherwise of 1000 (pixels). */
function size(value: string | undefined, flag: string, binary: boolean): number | undefined {
  if (value === undefined) return undefined;
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]i?)?b?$/i.exec(value.trim());
  let unit = (m?.[2] ?? '').toLowerCase();
  if (binary && unit.length === 1) unit += 'i';
  const n = m ? Math.floor(Number(m[1]) * SUFFIX[unit]!) : NaN;
  if (!(n >= 1)) throw new UsageError(`${flag} must be a size such as 1048576, 512K or 32M`);
  return n;
}

function integerFlag(value: string | undefined, flag: string, lo: number, hi: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < lo || n > hi) throw new UsageError(`${flag} must be an integer in [${lo}, ${hi}]`);
  return n;
}

async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...modelFlags,
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '8080' },
      alias: { type: 'string' },
      'api-key': { type: 'string' },
      parallel: { type: 'string' },
      queue: { type: 'string' },
      'max-body': { type: 'string' },
      'max-images': { type: 'string' },
      'max-pixels': { type: 'string' },
      'max-tiles': { type: 'string' },
      'allow-local-files': { type: 'string' },
      'shutdown-timeout': { type: 'string' },
    },
    strict: true,
  });
  checkModelFlags(values);
  const port = integerFlag(values.port, '--port', 0, 65535)!;
  const parallel = optionalPositiveInt(values.parallel, '--parallel') ?? 1;
  const queue = integerFlag(values.queue, '--queue', 0, 1_000_000) ?? 8;
  const maxImages = integerFlag(values['max-images'], '--max-images', 0, 1000);
  const maxTiles = optionalPositiveInt(values['max-tiles'], '--max-tiles');
  const maxBodyBytes = size(values['max-body'], '--max-body', true);
  const maxImagePixels = size(values['max-pixels'], '--max-pixels', false);
  const shutdownSeconds = Number(values['shutdown-timeout'] ?? 30);
  if (!(shutdownSeconds >= 0)) throw new UsageError('--shutdown-timeout must be a number of seconds');
  const apiKey = values['api-key'] ?? (process.env.HOVLE_API_KEY || undefined);
  const session = contextOptions(values);
  // Each running answer spins its own thread pool; sharing the cores avoids oversubscription.
  session.threads ??= Math.max(1, Math.floor(defaultComputeThreads() / parallel));

  const say = (line: string) => process.stderr.write(line + '\n');
  const loadAbort = new AbortController();
  const loading = loadModelFromFlags(values, loadAbort.signal);
  const server = createServer(loading, {
    session,
    parallel,
    queue,
    ...(values.alias !== undefined ? { modelName: values.alias } : {}),
    ...(apiKey ? { apiKey } : {}),
    ...(maxBodyBytes !== undefined ? { maxBodyBytes } : {}),
    ...(maxImages !== undefined ? { maxImages } : {}),
    ...(maxImagePixels !== undefined ? { maxImagePixels } : {}),
    ...(maxTiles !== undefined ? { maxTiles } : {}),
    ...(values['allow-local-files'] !== undefined ? { allowLocalFiles: values['allow-local-files'] } : {}),
    ...(values.quiet ? {} : { log: (line: string) => say(line) }),
  });

  let stopping = false;
  let stopped: () => void = () => {};
  const stoppedPromise = new Promise<void>((resolve) => (stopped = resolve));
  const onSignal = (sig: NodeJS.Signals) => {
    if (stopping) {
      say(`hovle serve: ${sig} again, exiting now`);
      process.exit(EXIT.interrupted);
    }
    stopping = true;
    loadAbort.abort(new Error(`interrupted (${sig})`));
    const { running, queued } = server.status();
    say(`hovle serve: ${sig}: shutting down (${running} running${queued ? `, ${queued} queued refused` : ''}; up to ${shutdownSeconds} s)`);
    void server.close({ timeoutMs: shutdownSeconds * 1000 }).then(stopped);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let model: HovleModel | undefined;
  try {
    const addr = await server.listen(port, values.host);
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    say(`hovle serve: listening on http://${host}:${addr.port} (OpenAI API at http://${host}:${addr.port}/v1${apiKey ? ', API key required' : ''})`);
    try {
      model = await loading;
    } catch (err) {
      if (stopping && (err as { code?: string }).code === 'ABORTED') {
        await stoppedPromise;
        return EXIT.interrupted;
      }
      throw err;
    }
    say(`hovle serve: model ${server.status().model} ready (${parallel} at once, ${queue} queued at most)`);
    await stoppedPromise;
    return EXIT.ok;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    // On a failure (port taken, model refused) nothing may keep the process alive.
    loadAbort.abort();
    await server.close({ timeoutMs: 0 });
    model?.dispose();
    loading.then((m) => m !== model && m.dispose(), () => {});
  }
}

export const serveCommand: Command = { name: 'serve', summary: 'OpenAI-compatible HTTP server (chat completions with images, streaming)', usage, run };
