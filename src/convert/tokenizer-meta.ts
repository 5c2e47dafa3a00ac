// The tokenizer of a HoVLE checkpoint (tokenizer.model + tokenizer_config.json +
// special_tokens_map.json) as standard GGUF tokenizer metadata (keys: TOKENIZER_KEYS).
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { HovleError } from '../errors.js';
import type { GgufValue } from '../gguf/format.js';
import { ARCH, IMAGE_TOKENS } from '../model/schema.js';
import { parseSentencePiece, PieceType } from './sentencepiece.js';

async function readJson(file: string, required: boolean): Promise<Record<string, unknown> | undefined> {
  if (!existsSync(file)) {
    if (required) throw new HovleError('CHECKPOINT_INVALID', `${file} is missing`);
    return undefined;
  }
  let v: unknown;
  try {
    v = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new HovleError('CHECKPOINT_INVALID', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new HovleError('CHECKPOINT_INVALID', `${file} is not a JSON object`);
  return v as Record<string, unknown>;
}

function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

export interface TokenizerInfo {
  metadata: Array<[string, GgufValue]>;
  tokens: string[];
}

export async function readTokenizer(dir: string, vocabSize: number, stopToken: string | undefined): Promise<TokenizerInfo> {
  const spPath = join(dir, 'tokenizer.model');
  if (!existsSync(spPath)) throw new HovleError('CHECKPOINT_INVALID', `${spPath} is missing`);
  const sp = parseSentencePiece(await readFile(spPath));
  if (sp.modelType !== 2) throw new HovleError('CHECKPOINT_INVALID', `${spPath}: model type ${sp.modelType} is not BPE (2)`);
  if (sp.pieces.length > vocabSize) {
    throw new HovleError('CHECKPOINT_INVALID', `${spPath}: ${sp.pieces.length} pieces exceed llm_config.vocab_size ${vocabSize}`);
  }
  const config = (await readJson(join(dir, 'tokenizer_config.json'), true))!;
  const specials = (await readJson(join(dir, 'special_tokens_map.json'), false)) ?? {};
  const addedJson = (await readJson(join(dir, 'added_tokens.json'), false)) ?? {};

  const tokens: string[] = [];
  const scores = new Float32Array(vocabSize);
  const types = new Int32Array(vocabSize);
  sp.pieces.forEach((p, i) => {
    tokens[i] = p.piece;
    scores[i] = p.score;
    types[i] = p.type;
  });

  const added = new Map<number, { content: string; special: boolean }>();
  const decoder = (config.added_tokens_decoder ?? {}) as Record<string, unknown>;
  for (const [idText, entry] of Object.entries(decoder)) {
    const id = Number(idText);
    const content = tokenContent(entry);
    if (!Number.isInteger(id) || id < 0 || content === undefined) {
      throw new HovleError('CHECKPOINT_INVALID', `tokenizer_config.json: bad added_tokens_decoder entry ${idText}`);
    }
    added.set(id, { content, special: (entry as { special?: boolean }).special !== false });
  }
  for (const [content, id] of Object.entries(addedJson)) {
    if (typeof id !== 'number' || !Number.isInteger(id)) throw new HovleError('CHECKPOINT_INVALID', `added_tokens.json: bad id for ${content}`);
    const prev = added.get(id);
    if (prev && prev.content !== content) {
      throw new HovleError('CHECKPOINT_INVALID', `added_tokens.json maps ${content} to ${id}, tokenizer_config.json says ${prev.content}`);
    }
    if (!prev) added.set(id, { content, special: true });
  }
  for (const [id, { content, special }] of added) {
    if (id >= vocabSize) {
      throw new HovleError('CHECKPOINT_INVALID', `added token ${content} has id ${id}, beyond llm_config.vocab_size ${vocabSize}`);
    }
    // InternLM2 renames placeholder SentencePiece pieces this way; sp's own special pieces keep their type.
    if (id >= sp.pieces.length || tokens[id] !== content) {
      tokens[id] = content;
      scores[id] = 0;
      types[id] = special ? PieceType.CONTROL : PieceType.USER_DEFINED;
    }
  }
  for (let i = 0; i < vocabSize; i++) {
    if (tokens[i] === undefined) {
      tokens[i] = `[PAD${i}]`;
      types[i] = PieceType.UNUSED;
    }
  }

  const idOf = (content: string | undefined, what: string, fallback?: number): number => {
    if (content !== undefined) {
      const id = tokens.indexOf(content);
      if (id >= 0) return id;
      throw new HovleError('CHECKPOINT_INVALID', `${what} token ${content} is not in the vocabulary`);
    }
    if (fallback !== undefined && fallback >= 0) return fallback;
    throw new HovleError('CHECKPOINT_INVALID', `no ${what} token`);
  };
  for (const t of Object.values(IMAGE_TOKENS)) idOf(t, 'image');

  const metadata: Array<[string, GgufValue]> = [
    ['tokenizer.ggml.model', { type: 'string', value: 'llama' }],
    ['tokenizer.ggml.tokens', { type: 'arr_string', value: tokens }],
    ['tokenizer.ggml.scores', { type: 'arr_f32', value: scores }],
    ['tokenizer.ggml.token_type', { type: 'arr_i32', value: types }],
    ['tokenizer.ggml.bos_token_id', { type: 'u32', value: idOf(tokenContent(specials.bos_token), 'BOS', sp.bosId) }],
    ['tokenizer.ggml.eos_token_id', { type: 'u32', value: idOf(tokenContent(specials.eos_token), 'EOS', sp.eosId) }],
    ['tokenizer.ggml.eot_token_id', { type: 'u32', value: idOf(stopToken, 'end-of-turn', idOf(tokenContent(specials.eos_token), 'EOS', sp.eosId)) }],
    ['tokenizer.ggml.unknown_token_id', { type: 'u32', value: idOf(tokenContent(specials.unk_token), 'UNK', sp.unkId) }],
  ];
  const pad = tokenContent(specials.pad_token);
  if (pad !== undefined) metadata.push(['tokenizer.ggml.padding_token_id', { type: 'u32', value: idOf(pad, 'padding') }]);
  metadata.push(
    ['tokenizer.ggml.add_bos_token', { type: 'bool', value: config.add_bos_token !== false }],
    ['tokenizer.ggml.add_eos_token', { type: 'bool', value: config.add_eos_token === true }],
    ['tokenizer.ggml.add_space_prefix', { type: 'bool', value: sp.addDummyPrefix }],
    [`${ARCH}.tokenizer.added_tokens`, { type: 'arr_i32', value: [...added.keys()].sort((a, b) => a - b) }],
    [`${ARCH}.tokenizer.byte_fallback`, { type: 'bool', value: sp.byteFallback }],
    [`${ARCH}.tokenizer.remove_extra_whitespaces`, { type: 'bool', value: sp.removeExtraWhitespaces }],
    [`${ARCH}.image.context_token`, { type: 'string', value: IMAGE_TOKENS.context }],
    [`${ARCH}.image.start_token`, { type: 'string', value: IMAGE_TOKENS.start }],
    [`${ARCH}.image.end_token`, { type: 'string', value: IMAGE_TOKENS.end }],
  );
  return { metadata, tokens };
}
