// Text <-> token ids from a HoVLE GGUF's standard tokenizer keys. Encoding runs natively
// (native/tokenizer.cpp); decoding maps pieces to bytes and assembles UTF-8 with a streaming
// TextDecoder, so a character split across tokens is never emitted half-done.
import { HovleError } from '../errors.js';
import type { GgufValue } from '../gguf/format.js';
import { loadAddon } from '../native/load.js';

const CONTROL = 3;
const BYTE = 6;
const UNUSED = 5;

export class Tokenizer {
  private readonly native: ReturnType<ReturnType<typeof loadAddon>['addon']['createTokenizer']>;
  /** Every piece's UTF-8 bytes (byte pieces as their byte, unused ones empty), back to back. */
  private readonly pieces: PieceBytes;
  /** SentencePiece's remove_extra_whitespaces: normalization collapses and trims whitespace. */
  private readonly dropsWhitespace: boolean;
  /**
   * Whether a text's tokens are those of the same text inside a longer one: not when every
   * encoded text gets a leading "▁" (add_space_prefix) or is trimmed (remove_extra_whitespaces).
   */
  readonly encodesMidText: boolean;
  private longestPiece = 0;

  private constructor(
    readonly tokens: string[],
    /** Ids rendered only on request: control pieces and the added (special) tokens. */
    private readonly special: Uint8Array,
    readonly bosId: number,
    readonly addBos: boolean,
    spec: Parameters<ReturnType<typeof loadAddon>['addon']['createTokenizer']>[0],
    types: Int32Array,
  ) {
    this.native = loadAddon().addon.createTokenizer(spec);
    this.dropsWhitespace = spec.removeExtraWhitespaces;
    this.encodesMidText = !spec.addSpacePrefix && !spec.removeExtraWhitespaces;
    this.pieces = packPieces(tokens, types);
  }

  static fromMetadata(meta: ReadonlyMap<string, GgufValue>, path = 'model'): Tokenizer {
    const need = (key: string, type: GgufValue['type']): GgufValue => {
      const v = meta.get(key);
      if (!v || v.type !== type) throw new HovleError('GGUF_INVALID', `${path}: ${key} is missing or not ${type}`);
      return v;
    };
    const model = need('tokenizer.ggml.model', 'string').value as string;
    if (model !== 'llama') throw new HovleError('GGUF_INVALID', `${path}: tokenizer model '${model}' is not SentencePiece ('llama')`);
    const tokens = need('tokenizer.ggml.tokens', 'arr_string').value as string[];
    const scores = Float32Array.from(need('tokenizer.ggml.scores', 'arr_f32').value as ArrayLike<number>);
    const types = Int32Array.from(need('tokenizer.ggml.token_type', 'arr_i32').value as ArrayLike<number>);
    const u32 = (key: string) => need(key, 'u32').value as number;
    if (scores.length !== tokens.length || types.length !== tokens.length) {
      throw new HovleError('GGUF_INVALID', `${path}: tokenizer arrays differ in length`);
    }
    // The merge queue orders pieces by score; NaN has no order.
    if (scores.some(Number.isNaN)) throw new HovleError('GGUF_INVALID', `${path}: tokenizer.ggml.scores holds NaN`);
    const flag = (key: string, fallback: boolean) => {
      const v = meta.get(key);
      return v && v.type === 'bool' ? v.value : fallback;
    };
    const added = meta.get('hovle.tokenizer.added_tokens');
    const id = (key: string) => {
      const v = u32(key);
      if (v >= tokens.length) throw new HovleError('GGUF_INVALID', `${path}: ${key} ${v} is outside the vocabulary of ${tokens.length}`);
      return v;
    };
    const bosId = id('tokenizer.ggml.bos_token_id');
    const addedIds = added && added.type === 'arr_i32' ? Int32Array.from(added.value) : new Int32Array(0);
    const special = new Uint8Array(tokens.length);
    types.forEach((t, i) => void (special[i] = t === CONTROL ? 1 : 0));
    for (const id of addedIds) if (id >= 0 && id < tokens.length) special[id] = 1;
    return new Tokenizer(tokens, special, bosId, flag('tokenizer.ggml.add_bos_token', true), {
      tokens,
      scores,
      types,
      added: addedIds,
      bosId,
      unkId: id('tokenizer.ggml.unknown_token_id'),
      addSpacePrefix: flag('tokenizer.ggml.add_space_prefix', false),
      byteFallback: flag('hovle.tokenizer.byte_fallback', true),
      removeExtraWhitespaces: flag('hovle.tokenizer.remove_extra_whitespaces', false),
    }, types);
  }

  /** Token ids of `text`; added tokens written in the text (e.g. "<|im_end|>") become their ids. */
  encode(text: string, options: { addBos?: boolean } = {}): Int32Array {
    if (typeof text !== 'string') throw new HovleError('INVALID_ARGUMENT', 'text must be a string');
    return this.native.encode(text, options.addBos ?? this.addBos);
  }

  /** The same as encode(), on a worker thread: for prompts long enough to hold the event loop. */
  async encodeAsync(text: string, options: { addBos?: boolean } = {}): Promise<Int32Array> {
    if (typeof text !== 'string') throw new HovleError('INVALID_ARGUMENT', 'text must be a string');
    return this.native.encodeAsync(text, options.addBos ?? this.addBos);
  }

  /**
   * A lower bound on the tokens of `text`, without tokenizing it (which runs on the calling
   * thread, about a second per few MB): no token covers more characters than the longest piece
   * in the vocabulary, and normalization removes nothing but whitespace, and that only when the
   * model's remove_extra_whitespaces is set. Every other character is counted.
   */
  minTokens(text: string): number {
    if (this.longestPiece === 0) this.longestPiece = this.tokens.reduce((n, t) => Math.max(n, t.length), 1);
    let chars = text.length;
    if (this.dropsWhitespace) {
      for (let i = 0; i < text.length; i++) {
        const c = text.charCodeAt(i);
        // ASCII and Unicode whitespace: a superset of what normalization may drop.
        if (c === 32 || (c >= 9 && c <= 13) || c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000 || c === 0xfeff) chars--;
      }
    }
    return Math.ceil(chars / this.longestPiece);
  }

  /**
   * A decoder for a stream of ids. Control and added (special) tokens are skipped, unless
   * `special` is true (all of them rendered) or lists the texts of those to render.
   */
  decoder(options: DecodeOptions = {}): TokenDecoder {
    const special = options.special ?? false;
    return new TokenDecoder(this.pieces, this.special, this.tokens, typeof special === 'boolean' ? special : this.specialIds(special));
  }

  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const d = this.decoder(options);
    let s = '';
    for (let i = 0; i < ids.length; i++) s += d.push(ids[i]!);
    return s + d.flush();
  }

  private specialByText: Map<string, number> | undefined;

  /** The ids of the special tokens with these texts (texts that are none are ignored). */
  private specialIds(texts: readonly string[]): Set<number> {
    if (!this.specialByText) {
      this.specialByText = new Map();
      this.special.forEach((isSpecial, id) => void (isSpecial && this.specialByText!.set(this.tokens[id]!, id)));
    }
    const ids = new Set<number>();
    for (const t of texts) {
      const id = this.specialByText.get(t);
      if (id !== undefined) ids.add(id);
    }
    return ids;
  }
}

interface PieceBytes {
  data: Uint8Array;
  /** Piece i is data[start[i], start[i + 1]). */
  start: Uint32Array;
}

/**
 * One buffer for all pieces, not a Uint8Array each: ~100k small typed arrays cost a JS object
 * and a backing store apiece, and building them at load grew V8's heap.
 */
function packPieces(tokens: readonly string[], types: Int32Array): PieceBytes {
  const start = new Uint32Array(tokens.length + 1);
  // A UTF-16 code unit never takes more than 3 UTF-8 bytes: one pass into a buffer that bound
  // sizes, then trimmed.
  const bound = tokens.reduce((n, t) => n + 3 * t.length, 0);
  const data = new Uint8Array(bound);
  const enc = new TextEncoder();
  let total = 0;
  tokens.forEach((t, i) => {
    start[i] = total;
    if (types[i] === BYTE && /^<0x[0-9A-Fa-f]{2}>$/.test(t)) data[total++] = parseInt(t.slice(3, 5), 16);
    else if (types[i] !== UNUSED) total += enc.encodeInto(t.replaceAll('\u2581', ' '), data.subarray(total)).written;
  });
  start[tokens.length] = total;
  return { data: data.slice(0, total), start };
}

export interface DecodeOptions {
  /** Render special tokens: all (true), none (false, the default), or those with these texts. */
  special?: boolean | readonly string[];
}

export class TokenDecoder {
  private readonly utf8 = new TextDecoder('utf-8', { fatal: false });

  constructor(
    private readonly pieces: PieceBytes,
    private readonly specialIds: Uint8Array,
    private readonly tokens: string[],
    /** Which special ids to render: all, none, or these. */
    private readonly special: boolean | ReadonlySet<number>,
  ) {}

  /** Text completed by this token (possibly empty while a character is still incomplete). */
  push(id: number): string {
    if (!Number.isInteger(id) || id < 0 || id >= this.tokens.length) throw new HovleError('INVALID_ARGUMENT', `token id ${id} is outside the vocabulary`);
    if (this.specialIds[id]) {
      const render = typeof this.special === 'boolean' ? this.special : this.special.has(id);
      return render ? this.utf8.decode() + this.tokens[id] : '';
    }
    const { data, start } = this.pieces;
    return start[id] === start[id + 1] ? '' : this.utf8.decode(data.subarray(start[id], start[id + 1]), { stream: true });
  }

  flush(): string {
    return this.utf8.decode();
  }
}
