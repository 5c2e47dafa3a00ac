import { parseArgs } from 'node:util';

import { createSession } from '../api.js';
import { EXIT, UsageError, type Command } from './command.js';
import { checkModelFlags, contextOptions, loadModelFromFlags, modelFlags, modelFlagsUsage, samplingFlags, samplingFlagsUsage, samplingOptions } from './model-flags.js';
import { interruptedExit, interruptSignal } from './progress.js';
import { formatStats } from './stats.js';

const usage = `Usage: hovle ask -m MODEL.gguf [--image FILE]... [options] "question"

Answers one question (about the images, if any), streaming the answer to stdout.

  -i, --image FILE       image (JPEG, PNG, BMP, GIF); repeat for several
      --json             print the answer and its stats as JSON instead of streaming
  -h, --help

${modelFlagsUsage}

${samplingFlagsUsage}

Ctrl-C stops the answer (exit code 130).`;

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...modelFlags,
      ...samplingFlags,
      image: { type: 'string', short: 'i', multiple: true, default: [] },
      json: { type: 'boolean', default: false },
    },
    strict: true,
  });
  checkModelFlags(values);
  if (positionals.length !== 1) throw new UsageError('expected exactly one question (quote it)');
  const sampling = samplingOptions(values);
  const ctxOptions = contextOptions(values);
  const { signal, dispose } = interruptSignal();
  let model;
  try {
    model = await loadModelFromFlags(values, signal);
    const session = await createSession(model, { ...ctxOptions, ...(values.system !== undefined ? { system: values.system } : {}) });
    const message = { text: positionals[0]!, images: values.image };
    if (values.json) {
      const r = await session.ask(message, { ...sampling, signal });
      process.stdout.write(JSON.stringify({ text: r.text, stopReason: r.stopReason, tokens: r.tokens.length, stats: r.stats }, null, 2) + '\n');
    } else {
      const gen = session.stream(message, { ...sampling, signal });
      let r = await gen.next();
      while (!r.done) {
        process.stdout.write(r.value);
        r = await gen.next();
      }
      process.stdout.write('\n');
      process.stderr.write(formatStats(r.value) + '\n');
    }
    session.dispose();
    return EXIT.ok;
  } catch (err) {
    if ((err as { code?: string }).code === 'ABORTED') {
      process.stdout.write('\n');
      return interruptedExit();
    }
    throw err;
  } finally {
    dispose();
    model?.dispose();
  }
}

export const askCommand: Command = { name: 'ask', summary: 'answer one question about images, streaming to stdout', usage, run };
