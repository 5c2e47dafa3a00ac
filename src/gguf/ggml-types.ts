// ggml's tensor types, read from the addon (ggml's own type traits) rather than copied here.
import { HovleError } from '../errors.js';
import { loadAddon } from '../native/load.js';
import type { GgmlTypeInfo } from '../native/addon.js';

export type { GgmlTypeInfo };

let byName: Map<string, GgmlTypeInfo> | undefined;
let byId: Map<number, GgmlTypeInfo> | undefined;

function tables(): { byName: Map<string, GgmlTypeInfo>; byId: Map<number, GgmlTypeInfo> } {
  if (!byName || !byId) {
    const list = loadAddon().addon.ggmlTypes();
    byName = new Map(list.map((t) => [t.name.toLowerCase(), t]));
    byId = new Map(list.map((t) => [t.id, t]));
  }
  return { byName, byId };
}

/** Type by ggml name, case-insensitive ("q4_K", "Q4_K", "q4_k"). */
export function ggmlType(name: string): GgmlTypeInfo {
  const t = tables().byName.get(name.toLowerCase());
  if (!t) throw new HovleError('INVALID_ARGUMENT', `unknown ggml type '${name}'`);
  return t;
}

export function ggmlTypeById(id: number): GgmlTypeInfo | undefined {
  return tables().byId.get(id);
}

/** Bytes of one row of `cols` elements; throws when cols does not fill whole blocks. */
export function rowBytes(type: GgmlTypeInfo, cols: number): number {
  if (cols % type.blockSize !== 0) {
    throw new HovleError('INVALID_ARGUMENT', `${cols} is not a multiple of ${type.name}'s block size ${type.blockSize}`);
  }
  return (cols / type.blockSize) * type.typeSize;
}

/** Bytes of a tensor with ggml dims (ne0 first). */
export function tensorBytes(type: GgmlTypeInfo, dims: readonly number[]): number {
  const rows = dims.slice(1).reduce((a, b) => a * b, 1);
  return rowBytes(type, dims[0] ?? 1) * rows;
}
