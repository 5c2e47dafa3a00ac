import { parseArgs } from 'node:util';

import { quantizeGguf } from '../convert/quantize.js';
import { FILE_TYPES, type FileType } from '../convert/type-policy.js';
import { EXIT, optionalPositiveInt, UsageError, type Command } from './command.js';
import { formatBytes } from './format.js';
import { interruptSignal, ProgressBar } from './progress.js';

const usage = `Usage: hovle quantize <in.gguf> <out.gguf> <TYPE> [options]

Re-types a HoVLE GGUF (usually an f32/f16/bf16 one) with the same per-tensor policy as convert.
TYPE: ${FILE_TYPES.join(' | ')}

Options:
      --allow-requantize   accept already-quantized inputs (accuracy loss compounds)
      --threads N          threads (default: all cores)
      --json               print the result as JSON
  -h, --help`;

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      'allow-requantize': { type: 'boolean', default: false },
      threads: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (positionals.length !== 3) throw new UsageError('expected <in.gguf> <out.gguf> <TYPE>');
  const [input, output, type] = positionals as [string, string, string];
  if (!FILE_TYPES.includes(type as FileType)) throw new UsageError(`TYPE must be one of ${FILE_TYPES.join(', ')}`);
  const threads = optionalPositiveInt(values.threads, '--threads');
  const bar = new ProgressBar(`quantize ${type}`, values.json);
  const { signal, dispose } = interruptSignal();
  const started = Date.now();
  try {
    const r = await quantizeGguf(input, output, type as FileType, {
      signal,
      allowRequantize: values['allow-requantize'],
      ...(threads !== undefined ? { threads } : {}),
      onProgress: (p) => bar.update(p.bytesWritten, p.bytesTotal, p.tensor),
    });
    bar.done();
    const seconds = (Date.now() - started) / 1000;
    if (values.json) {
      process.stdout.write(JSON.stringify({ path: r.path, type, bytes: r.bytes, tensors: r.tensors, seconds, tensorTypes: r.tensorTypes }, null, 2) + '\n');
    } else {
      process.stdout.write(`${r.path}: ${formatBytes(r.bytes)}, ${r.tensors} tensors in ${seconds.toFixed(1)} s\n`);
    }
    return EXIT.ok;
  } finally {
    dispose();
  }
}

export const quantizeCommand: Command = { name: 'quantize', summary: 're-type a HoVLE GGUF (e.g. f16 -> q4_k_m)', usage, run };
