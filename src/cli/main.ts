#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { HovleError } from '../errors.js';
import { packageRoot } from '../paths.js';
import { EXIT, UsageError, type Command } from './command.js';
import { interruptedBy, interruptedExit } from './progress.js';
import { askCommand } from './ask.js';
import { benchCommand } from './bench.js';
import { chatCommand } from './chat.js';
import { convertCommand } from './convert.js';
import { evalCommand } from './eval.js';
import { infoCommand } from './info.js';
import { pullCommand } from './pull.js';
import { quantizeCommand } from './quantize.js';
import { serveCommand } from './serve.js';

const commands: Command[] = [
  askCommand, chatCommand, serveCommand, pullCommand, convertCommand, quantizeCommand, infoCommand, benchCommand, evalCommand,
];

function mainUsage(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    'Usage: hovle <command> [options]',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Run `hovle <command> --help` for a command\'s options.',
    'Options: -h, --help   -v, --version',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    process.stdout.write(mainUsage() + '\n');
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  if (name === '-v' || name === '--version') {
    const pkg = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string };
    process.stdout.write(pkg.version + '\n');
    return EXIT.ok;
  }
  const command = commands.find((c) => c.name === name);
  if (!command) {
    process.stderr.write(`hovle: unknown command '${name}'\n\n${mainUsage()}\n`);
    return EXIT.usage;
  }
  if (rest.includes('-h') || rest.includes('--help')) {
    process.stdout.write(command.usage + '\n');
    return EXIT.ok;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`hovle ${name}: ${(err as Error).message}\n\n${command.usage}\n`);
      return EXIT.usage;
    }
    if (err instanceof HovleError && err.code === 'ABORTED' && interruptedBy) {
      process.stderr.write(`hovle ${name}: interrupted (${interruptedBy})\n`);
      return interruptedExit();
    }
    if (err instanceof HovleError) {
      process.stderr.write(`hovle ${name}: ${err.message} [${err.code}]\n`);
      return EXIT.failure;
    }
    throw err;
  }
}

// A reader that closed its end (`hovle ask ... | head`): stop quietly, as a pipeline expects,
// instead of an unhandled EPIPE with a stack trace.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(EXIT.ok);
  throw err;
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`hovle: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = EXIT.failure;
  },
);
