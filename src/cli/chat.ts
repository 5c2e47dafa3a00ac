import { statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

import { createSession } from '../api.js';
import { HovleError } from '../errors.js';
import type { HovleModel } from '../runtime/model.js';
import type { Session, SessionOptions } from '../session/session.js';
import { EXIT, type Command } from './command.js';
import { checkModelFlags, contextOptions, loadModelFromFlags, modelFlags, modelFlagsUsage, samplingFlags, samplingFlagsUsage, samplingOptions } from './model-flags.js';
import { interruptSignal } from './progress.js';
import { formatStats } from './stats.js';

const commandsHelp = `Commands inside the chat:
  /image FILE   attach an image to your next message (repeat for several)
  /reset        forget the conversation (and attached images)
  /help         this list
  /exit         quit (also Ctrl-D; Ctrl-C stops an answer, or quits at the prompt)`;

const usage = `Usage: hovle chat -m MODEL.gguf [--image FILE]... [options]

An interactive conversation. Each line you type is a message; the answer streams back.
With stdin not a terminal, each input line is a message (scriptable).

  -i, --image FILE       attach an image to the first message; repeat for several
      --stats            print speed and token counts after each answer
  -h, --help

${modelFlagsUsage}

${samplingFlagsUsage}

${commandsHelp}`;

/** A queued image: checked when attached so a typo is reported at once, not with the next message. */
function checkImage(path: string): string | undefined {
  try {
    if (!statSync(path).isFile()) return `${path} is not a file`;
  } catch {
    return `cannot read ${path}`;
  }
  return undefined;
}

async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...modelFlags,
      ...samplingFlags,
      image: { type: 'string', short: 'i', multiple: true, default: [] },
      stats: { type: 'boolean', default: false },
    },
    strict: true,
  });
  checkModelFlags(values);
  const sampling = samplingOptions(values);
  const sessionOptions: SessionOptions = { ...contextOptions(values), ...(values.system !== undefined ? { system: values.system } : {}) };
  const pending: string[] = [];
  for (const image of values.image) {
    const problem = checkImage(image);
    if (problem) throw new HovleError('IMAGE_INVALID', problem);
    pending.push(image);
  }

  const interactive = Boolean(process.stdin.isTTY);
  let model: HovleModel | undefined;
  {
    const { signal, dispose } = interruptSignal();
    try {
      model = await loadModelFromFlags(values, signal);
    } catch (err) {
      if ((err as { code?: string }).code === 'ABORTED') return EXIT.interrupted;
      throw err;
    } finally {
      dispose();
    }
  }
  let session: Session = await createSession(model, sessionOptions);
  const say = (line: string) => process.stderr.write(line + '\n');
  if (interactive) say(`hovle chat: ${model.path}. /help lists the commands.`);

  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: interactive, prompt: '> ' });
  // Ctrl-C stops the answer being generated; at the prompt it ends the chat.
  let answering: AbortController | undefined;
  const onInterrupt = () => {
    if (answering) answering.abort(new Error('interrupted (SIGINT)'));
    else rl.close();
  };
  rl.on('SIGINT', onInterrupt);
  if (!interactive) process.on('SIGINT', onInterrupt);

  let failures = 0;
  try {
    if (interactive) rl.prompt();
    for await (const raw of rl) {
      const line = raw.trim();
      if (line === '') {
        if (interactive) rl.prompt();
        continue;
      }
      if (line.startsWith('/')) {
        const cmd = line.split(/\s+/)[0]!;
        const arg = line.slice(cmd.length).trim();
        if (cmd === '/exit' || cmd === '/quit') break;
        if (cmd === '/help') say(commandsHelp);
        else if (cmd === '/reset') {
          session.dispose();
          session = await createSession(model, sessionOptions);
          pending.length = 0;
          say('[conversation cleared]');
        } else if (cmd === '/image') {
          const problem = arg ? checkImage(arg) : 'usage: /image FILE';
          if (problem) {
            say(`[${problem}]`);
            failures++;
          } else {
            pending.push(arg);
            say(`[image ${pending.length} attached: ${arg}]`);
          }
        } else {
          say(`[unknown command ${cmd}; /help lists them]`);
          failures++;
        }
        if (interactive) rl.prompt();
        continue;
      }

      answering = new AbortController();
      // Attached images belong to this message even if it fails: a bad one must not stick.
      const images = pending.splice(0);
      try {
        const gen = session.stream({ text: line, images }, { ...sampling, signal: answering.signal });
        let r = await gen.next();
        while (!r.done) {
          process.stdout.write(r.value);
          r = await gen.next();
        }
        process.stdout.write('\n');
        if (values.stats) say(formatStats(r.value));
      } catch (err) {
        if (!(err instanceof HovleError)) throw err;
        if (err.code === 'ABORTED') {
          process.stdout.write('\n');
          say('[stopped]');
        } else {
          // The conversation stays usable: a bad image or an over-long message is refused before
          // anything is added to the cache.
          say(`[error: ${err.message} (${err.code})${err.code === 'CONTEXT_FULL' ? '; /reset starts over' : ''}]`);
          failures++;
        }
      } finally {
        answering = undefined;
      }
      if (interactive) rl.prompt();
    }
  } finally {
    process.off('SIGINT', onInterrupt);
    rl.close();
    session.dispose();
    model.dispose();
  }
  // A script piping messages learns that some were refused.
  return failures > 0 && !interactive ? EXIT.failure : EXIT.ok;
}

export const chatCommand: Command = { name: 'chat', summary: 'interactive conversation; /image FILE attaches an image', usage, run };
