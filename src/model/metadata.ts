// HovleHParams <-> GGUF metadata, driven entirely by META_KEYS in schema.ts.
import { HovleError } from '../errors.js';
import type { GgufValue } from '../gguf/format.js';
import type { HovleHParams } from './hparams.js';
import { ARCH, META_KEYS } from './schema.js';

function getPath(obj: unknown, path: readonly string[]): unknown {
  return path.reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], obj);
}

function setPath(obj: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let o = obj;
  for (const k of path.slice(0, -1)) o = (o[k] ??= {}) as Record<string, unknown>;
  o[path[path.length - 1]!] = value;
}

/** The hparams-backed metadata entries (general.architecture included). */
export function hparamsToMetadata(h: HovleHParams): Array<[string, GgufValue]> {
  const out: Array<[string, GgufValue]> = [['general.architecture', { type: 'string', value: ARCH }]];
  for (const def of META_KEYS) {
    if (!def.path) continue;
    const raw = getPath(h, def.path);
    const value = def.toGguf ? def.toGguf(raw) : raw;
    out.push([def.key, { type: def.kind, value } as GgufValue]);
  }
  return out;
}

/** Reads hyperparameters back; a missing or mistyped key is a GGUF_INVALID error naming it. */
export function hparamsFromMetadata(meta: ReadonlyMap<string, GgufValue>, path = 'model'): HovleHParams {
  const arch = meta.get('general.architecture');
  if (!arch || arch.type !== 'string' || arch.value !== ARCH) {
    throw new HovleError('GGUF_INVALID', `${path}: general.architecture is ${arch ? JSON.stringify(arch.value) : 'missing'}, expected "${ARCH}"`);
  }
  const h: Record<string, unknown> = {};
  for (const def of META_KEYS) {
    if (!def.path) continue;
    const v = meta.get(def.key);
    if (!v) throw new HovleError('GGUF_INVALID', `${path}: metadata key ${def.key} is missing`);
    if (v.type !== def.kind) throw new HovleError('GGUF_INVALID', `${path}: ${def.key} is ${v.type}, expected ${def.kind}`);
    let value: unknown = v.value;
    if (def.kind === 'arr_f32') value = Array.from(value as ArrayLike<number>);
    if (def.fromGguf) {
      try {
        value = def.fromGguf(value);
      } catch (err) {
        throw new HovleError('GGUF_INVALID', `${path}: ${def.key}: ${(err as Error).message}`);
      }
    }
    setPath(h, def.path, value);
  }
  return h as unknown as HovleHParams;
}
