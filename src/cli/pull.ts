import { parseArgs } from 'node:util';

import { FILE_TYPES, type FileType } from '../convert/type-policy.js';
import { HovleError } from '../errors.js';
import { checkRevision, parseRepoId } from '../hub/endpoint.js';
import { DEFAULT_PULL_TYPE, pullModel } from '../hub/pull.js';
import { EXIT, optionalPositiveInt, UsageError, type Command } from './command.js';
import { formatBytes } from './format.js';
import { interruptSignal, ProgressBar } from './progress.js';

const usage = `Usage: hovle pull <owner/name> [--type TYPE] [options]

Downloads a HoVLE checkpoint from the Hugging Face hub (e.g. OpenGVLab/HoVLE), converts it to
GGUF and caches the result; prints the model's path. Every file is checked against the size and
sha256 the hub lists. An interrupted download (Ctrl-C, lost connection) resumes where it stopped
on the next run; a model already converted from the same files is not downloaded or converted again.

Options:
  -t, --type TYPE          ${FILE_TYPES.join(' | ')} (default ${DEFAULT_PULL_TYPE})
  -r, --revision REV       branch, tag or commit (default main)
  -o, --output FILE        write the GGUF here instead of the cache (always converts)
      --keep-checkpoint    keep the downloaded safetensors checkpoint in the cache; by default
                           it is deleted once converted
      --threads N          quantization threads (default: all cores)
      --json               print path, type and sizes as JSON
  -h, --help

Environment:
  HF_ENDPOINT    hub URL (default https://huggingface.co)
  HF_TOKEN       access token for private or gated repos, sent as Authorization: Bearer
  HOVLE_CACHE    cache folder (default $XDG_CACHE_HOME/hovle, else ~/.cache/hovle)

Exit codes: 0 done, 1 download or conversion failed, 2 bad command line, 130 interrupted.`;

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      type: { type: 'string', short: 't', default: DEFAULT_PULL_TYPE },
      revision: { type: 'string', short: 'r', default: 'main' },
      output: { type: 'string', short: 'o' },
      'keep-checkpoint': { type: 'boolean', default: false },
      threads: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (positionals.length !== 1) throw new UsageError('expected exactly one repo id (owner/name)');
  const repo = positionals[0]!;
  if (!FILE_TYPES.includes(values.type as FileType)) throw new UsageError(`--type must be one of ${FILE_TYPES.join(', ')}`);
  const threads = optionalPositiveInt(values.threads, '--threads');
  try {
    parseRepoId(repo);
    checkRevision(values.revision);
  } catch (err) {
    if (err instanceof HovleError) throw new UsageError(err.message);
    throw err;
  }

  const download = new ProgressBar('download', values.json);
  const convert = new ProgressBar(`convert ${values.type}`, values.json);
  let phase: 'download' | 'convert' | undefined;
  const { signal, dispose } = interruptSignal();
  const started = Date.now();
  try {
    const r = await pullModel(repo, {
      type: values.type as FileType,
      revision: values.revision,
      keepCheckpoint: values['keep-checkpoint'],
      signal,
      ...(values.output !== undefined ? { output: values.output } : {}),
      ...(threads !== undefined ? { threads } : {}),
      onProgress: (p) => {
        if (p.phase === 'convert' && phase === 'download') download.done();
        phase = p.phase;
        (p.phase === 'download' ? download : convert).update(p.bytesDone, p.bytesTotal, p.phase === 'download' ? p.file : p.tensor);
      },
    });
    if (phase !== undefined) (phase === 'download' ? download : convert).done();
    const seconds = (Date.now() - started) / 1000;
    if (values.json) {
      process.stdout.write(JSON.stringify({ ...r, seconds }, null, 2) + '\n');
    } else {
      // stdout is the path alone, for $(hovle pull ...); the details go to stderr.
      const fetched = r.downloadedBytes > 0 ? `downloaded ${formatBytes(r.downloadedBytes)}, ` : '';
      process.stderr.write(r.converted ? `hovle pull: ${formatBytes(r.bytes)} ${r.type} (${fetched}${seconds.toFixed(1)} s)\n` : 'hovle pull: up to date in the cache\n');
      if (r.checkpointDir) process.stderr.write(`checkpoint kept in ${r.checkpointDir}\n`);
      process.stdout.write(`${r.path}\n`);
    }
    return EXIT.ok;
  } catch (err) {
    if (err instanceof HovleError && err.code === 'ABORTED') {
      if (phase !== undefined && process.stderr.isTTY) process.stderr.write('\n');
      process.stderr.write('hovle pull: interrupted; run the same command again to resume the download\n');
      return EXIT.interrupted;
    }
    throw err;
  } finally {
    dispose();
  }
}

export const pullCommand: Command = { name: 'pull', summary: 'download a HoVLE checkpoint from the Hugging Face hub and convert it', usage, run };
