// Child process for test/stress.test.ts: terminates worker threads while their calls run on the
// model's thread, writing a caller's logits buffer in place, then prints the process's thread
// count and RSS as JSON. A crash here (the model thread writing memory the worker's V8 freed)
// shows as a non-zero exit; leaked models show as threads that stay.
// Modes: "long", one 4000-token evaluate() writing a 16 MB logits buffer (terminated mid-call);
// "loop", short evaluate() calls back to back, so that calls finish and settle while the worker
// is being terminated (its JS already stopped: creating the result throws).
//   node test/helpers/worker-terminate.mjs MODEL.gguf ROUNDS long|loop
import { readdirSync } from 'node:fs';
import { Worker } from 'node:worker_threads';

const [model, rounds = '6', mode = 'long'] = process.argv.slice(2);
const modelJs = new URL('../../dist/runtime/model.js', import.meta.url).href;
const work = mode === 'loop'
  ? `parentPort.postMessage('started');
for (;;) { await c.evaluate([5, 6, 7], [], { logits: 'all' }); await c.rewind(0); }`
  : `const ids = Array.from({ length: 4000 }, (_, i) => 3 + (i % 900));
const into = new Float32Array(ids.length * m.hparams.vocabSize);
void c.evaluate(ids, [], { logits: 'all', logitsInto: into }).catch(() => {});
parentPort.postMessage('started');`;
const src = `
import { HovleModel } from ${JSON.stringify(modelJs)};
import { parentPort } from 'node:worker_threads';
const m = await HovleModel.load(${JSON.stringify(model)});
const c = await m.createContext({ contextSize: 4096, batchSize: 32, threads: 1 });
${work}
`;
const threads = () => readdirSync('/proc/self/task').length;
const before = threads();
for (let i = 0; i < Number(rounds); i++) {
  const w = new Worker(src, { eval: true, type: 'module' });
  await new Promise((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });
  await new Promise((r) => setTimeout(r, mode === 'loop' ? 3 + (i % 7) : 20 + 10 * i));
  await w.terminate();
}
// Model threads that outlived their workers would still be running here.
await new Promise((r) => setTimeout(r, 300));
process.stdout.write(JSON.stringify({ before, after: threads(), rssMiB: process.memoryUsage().rss / 2 ** 20 }) + '\n');
