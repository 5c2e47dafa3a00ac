// Reads a SentencePiece tokenizer.model (a ModelProto protobuf) without a protobuf library: only
// the fields the GGUF tokenizer needs (pieces, scores, types, model type, byte fallback, special
// ids, add_dummy_prefix). Field numbers from sentencepiece_model.proto.
import { HovleError } from '../errors.js';

export enum PieceType {
  NORMAL = 1,
  UNKNOWN = 2,
  CONTROL = 3,
  USER_DEFINED = 4,
  UNUSED = 5,
  BYTE = 6,
}

export interface SentencePieceModel {
  pieces: Array<{ piece: string; score: number; type: PieceType }>;
  /** 1 unigram, 2 BPE, 3 word, 4 char. */
  modelType: number;
  byteFallback: boolean;
  unkId: number;
  bosId: number;
  eosId: number;
  padId: number;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
}

class Reader {
  pos = 0;
  constructor(private readonly b: Uint8Array, private readonly end: number, private readonly what: string) {}

  fail(msg: string): never {
    throw new HovleError('CHECKPOINT_INVALID', `tokenizer.model: ${this.what}: ${msg} at byte ${this.pos}`);
  }
  done(): boolean {
    return this.pos >= this.end;
  }
  varint(): bigint {
    let result = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.fail('truncated varint');
      const byte = this.b[this.pos++]!;
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7n;
    }
    return this.fail('varint longer than 10 bytes');
  }
  int(): number {
    return Number(BigInt.asIntN(32, this.varint()));
  }
  float(): number {
    if (this.pos + 4 > this.end) this.fail('truncated float');
    const v = new DataView(this.b.buffer, this.b.byteOffset + this.pos, 4).getFloat32(0, true);
    this.pos += 4;
    return v;
  }
  bytes(): { start: number; end: number } {
    const n = Number(this.varint());
    if (n < 0 || this.pos + n > this.end) this.fail('length-delimited field runs past its message');
    const start = this.pos;
    this.pos += n;
    return { start, end: this.pos };
  }
  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) this.bytes();
    else if (wire === 5) this.pos += 4;
    else this.fail(`unsupported wire type ${wire}`);
    if (this.pos > this.end) this.fail('field runs past its message');
  }
  sub(range: { start: number; end: number }, what: string): Reader {
    const r = new Reader(this.b, range.end, what);
    r.pos = range.start;
    return r;
  }
  text(range: { start: number; end: number }): string {
    return Buffer.from(this.b.buffer, this.b.byteOffset + range.start, range.end - range.start).toString('utf8');
  }
}

export function parseSentencePiece(data: Uint8Array): SentencePieceModel {
  const m: SentencePieceModel = {
    pieces: [], modelType: 1, byteFallback: false, unkId: 0, bosId: 1, eosId: 2, padId: -1,
    addDummyPrefix: true, removeExtraWhitespaces: true, escapeWhitespaces: true,
  };
  const r = new Reader(data, data.length, 'ModelProto');
  while (!r.done()) {
    const key = Number(r.varint());
    const field = key >>> 3;
    const wire = key & 7;
    if (field === 1 && wire === 2) {
      const p = r.sub(r.bytes(), 'SentencePiece');
      let piece: string | undefined;
      let score = 0;
      let type = PieceType.NORMAL;
      while (!p.done()) {
        const k = Number(p.varint());
        if (k >>> 3 === 1 && (k & 7) === 2) piece = p.text(p.bytes());
        else if (k >>> 3 === 2 && (k & 7) === 5) score = p.float();
        else if (k >>> 3 === 3 && (k & 7) === 0) type = p.int();
        else p.skip(k & 7);
      }
      if (piece === undefined) return r.fail(`piece ${m.pieces.length} has no text`);
      if (!(type in PieceType)) r.fail(`piece ${m.pieces.length} has unknown type ${type}`);
      m.pieces.push({ piece, score, type });
    } else if (field === 2 && wire === 2) {
      const t = r.sub(r.bytes(), 'TrainerSpec');
      while (!t.done()) {
        const k = Number(t.varint());
        const f = k >>> 3;
        if ((k & 7) !== 0) { t.skip(k & 7); continue; }
        const v = t.int();
        if (f === 3) m.modelType = v;
        else if (f === 35) m.byteFallback = v !== 0;
        else if (f === 40) m.unkId = v;
        else if (f === 41) m.bosId = v;
        else if (f === 42) m.eosId = v;
        else if (f === 43) m.padId = v;
      }
    } else if (field === 3 && wire === 2) {
      const n = r.sub(r.bytes(), 'NormalizerSpec');
      while (!n.done()) {
        const k = Number(n.varint());
        const f = k >>> 3;
        if ((k & 7) !== 0) { n.skip(k & 7); continue; }
        const v = n.int() !== 0;
        if (f === 3) m.addDummyPrefix = v;
        else if (f === 4) m.removeExtraWhitespaces = v;
        else if (f === 5) m.escapeWhitespaces = v;
      }
    } else {
      r.skip(wire);
    }
  }
  if (m.pieces.length === 0) throw new HovleError('CHECKPOINT_INVALID', 'tokenizer.model has no pieces');
  return m;
}
