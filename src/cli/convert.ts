import { parseArgs } from 'node:util';

import { convertCheckpoint } from '../convert/convert.js';
import { FILE_TYPES, type FileType } from '../convert/type-policy.js';
import { EXIT, optionalPositiveInt, UsageError, type Command } from './command.js';
import { formatBytes } from './format.js';
import { interruptSignal, ProgressBar } from './progress.js';

const usage = `Usage: hovle convert <hf-dir> -o <model.gguf> [--type TYPE] [options]

Converts a HoVLE checkpoint in Hugging Face format (config.json, model.safetensors or sharded
safetensors with model.safetensors.index.json, tokenizer.model, tokenizer_config.json) into one
GGUF file. Every tensor is checked against config.json before anything is written; the output
appears only when complete (Ctrl-C leaves nothing behind).

Options:
  -o, --output FILE        output GGUF path (required)
  -t, --type TYPE          ${FILE_TYPES.join(' | ')} (default f16)
      --name NAME          general.name (default: the checkpoint folder's name)
      --system-message S   replace the template's default system message
      --threads N          quantization threads (default: all cores)
      --json               print the result as JSON
  -h, --help`;

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      output: { type: 'string', short: 'o' },
      type: { type: 'string', short: 't', default: 'f16' },
      name: { type: 'string' },
      'system-message': { type: 'string' },
      threads: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (positionals.length !== 1) throw new UsageError('expected exactly one checkpoint folder');
  if (!values.output) throw new UsageError('--output is required');
  if (!FILE_TYPES.includes(values.type as FileType)) throw new UsageError(`--type must be one of ${FILE_TYPES.join(', ')}`);
  const threads = optionalPositiveInt(values.threads, '--threads');

  const bar = new ProgressBar(`convert ${values.type}`, values.json);
  const { signal, dispose } = interruptSignal();
  const started = Date.now();
  try {
    const r = await convertCheckpoint(positionals[0]!, values.output, {
      type: values.type as FileType,
      signal,
      ...(threads !== undefined ? { threads } : {}),
      ...(values.name !== undefined ? { name: values.name } : {}),
      ...(values['system-message'] !== undefined ? { systemMessage: values['system-message'] } : {}),
      onProgress: (p) => bar.update(p.bytesWritten, p.bytesTotal, p.tensor),
    });
    bar.done();
    const seconds = (Date.now() - started) / 1000;
    if (values.json) {
      process.stdout.write(JSON.stringify({ path: r.path, type: r.type, bytes: r.bytes, tensors: r.tensors, seconds, tensorTypes: r.tensorTypes }, null, 2) + '\n');
    } else {
      const counts = new Map<string, number>();
      for (const t of Object.values(r.tensorTypes)) counts.set(t, (counts.get(t) ?? 0) + 1);
      process.stdout.write(
        `${r.path}: ${formatBytes(r.bytes)}, ${r.tensors} tensors (${[...counts].map(([t, n]) => `${n} ${t}`).join(', ')}) in ${seconds.toFixed(1)} s\n`,
      );
    }
    return EXIT.ok;
  } finally {
    dispose();
  }
}

export const convertCommand: Command = { name: 'convert', summary: 'convert a Hugging Face HoVLE checkpoint to GGUF', usage, run };
