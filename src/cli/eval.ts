import { readFile, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';

import { HovleError } from '../errors.js';
import { patchesPerTile } from '../model/hparams.js';
import { HovleModel, type Backend } from '../runtime/model.js';
import { EXIT, optionalPositiveInt, UsageError, type Command } from './command.js';

const BACKENDS: Backend[] = ['cpu', 'vulkan', 'cuda', 'metal'];

const usage = `Usage: hovle eval --model M.gguf --ids ids.json [--image FILE]... [--max-tiles N]
                  --logits OUT.f32 [--hidden OUT.f32] [--backend cpu|vulkan|cuda|metal]

Runs the model over a token sequence and writes raw little-endian float32 arrays: the logits of
every position ([positions][vocab], row-major) and optionally the embedding module's output
([positions][hidden]; in "post" models the positions of the HD sequence). ids.json is a JSON
array of token ids with each image's <IMG_CONTEXT> run already expanded (256 per tile); the
images are given in order and tiled with the model's settings (--max-tiles overrides the
maximum). Uses an f32 KV cache and no flash attention, the settings closest to the reference.

Options:
  -m, --model FILE  HoVLE GGUF
  --ids FILE        JSON array of ints
  --image FILE      image file (JPEG, PNG, BMP, GIF); repeat for several, in order
  --max-tiles N     maximum tiles per image (default: the model's)
  --logits FILE     output logits
  --hidden FILE     output embedding-module states
  --backend NAME    cpu (default), vulkan, cuda or metal
  -h, --help`;

async function writeOutput(path: string, data: Float32Array): Promise<void> {
  try {
    await writeFile(path, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  } catch (err) {
    throw new HovleError('IO_ERROR', `cannot write ${path}: ${(err as Error).message}`, { cause: err });
  }
}

async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string', short: 'm' },
      ids: { type: 'string' },
      image: { type: 'string', multiple: true, default: [] },
      'max-tiles': { type: 'string' },
      logits: { type: 'string' },
      hidden: { type: 'string' },
      backend: { type: 'string', default: 'cpu' },
    },
    strict: true,
  });
  if (!values.model || !values.ids || !values.logits) throw new UsageError('--model, --ids and --logits are required');
  if (!BACKENDS.includes(values.backend as Backend)) throw new UsageError(`--backend must be one of ${BACKENDS.join(', ')}`);
  const maxTiles = optionalPositiveInt(values['max-tiles'], '--max-tiles');

  let ids: unknown;
  try {
    ids = JSON.parse(await readFile(values.ids, 'utf8'));
  } catch (err) {
    throw new HovleError('INVALID_ARGUMENT', `cannot read ${values.ids} as JSON: ${(err as Error).message}`);
  }
  if (!Array.isArray(ids) || ids.length === 0 || !ids.every((x) => Number.isInteger(x))) {
    throw new HovleError('INVALID_ARGUMENT', `${values.ids} must hold a non-empty JSON array of integers`);
  }
  const started = performance.now();
  const model = await HovleModel.load(values.model, { backend: values.backend as Backend });
  try {
    const images = [];
    for (const file of values.image) images.push(await model.preprocessImage(file, maxTiles === undefined ? {} : { maxTiles }));
    const hp = model.hparams;
    const post = hp.vision.pixelShuffleLoc === 'post';
    const tiles = images.reduce((n, i) => n + i.tiles, 0);
    const extra = post ? tiles * patchesPerTile(hp.vision) : 0;
    // As the usage says: f32 cache, no flash attention, the plainest graph for external checks.
    const ctx = await model.createContext({ contextSize: ids.length, embeddingContextSize: ids.length + extra, kvType: 'f32', flashAttention: false });
    try {
      const r = await ctx.evaluate(ids as number[], images, { logits: 'all', hidden: Boolean(values.hidden) });
      await writeOutput(values.logits, r.logits);
      if (values.hidden && r.hidden) await writeOutput(values.hidden, r.hidden);
      process.stderr.write(
        `eval: ${ids.length} positions${r.hdIds ? ` (${r.hdIds.length} in the embedding module)` : ''}, ${images.length} image(s), ` +
          `${tiles} tile(s) on ${model.device} in ${((performance.now() - started) / 1000).toFixed(2)} s\n`,
      );
    } finally {
      ctx.dispose();
    }
  } finally {
    model.dispose();
  }
  return EXIT.ok;
}

export const evalCommand: Command = { name: 'eval', summary: 'logits (and hidden states) of a token sequence with images, as raw float32', usage, run };
