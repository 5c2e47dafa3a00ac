// Renders docs/gguf-layout.md from the schema table (scripts/gen-gguf-doc.mjs writes it; a test
// checks the committed file is current), so the documentation cannot drift from the code.
import { FILE_TYPE_CODE, FILE_TYPES } from '../convert/type-policy.js';
import { GLOBAL_TENSORS, IGNORED_HF_TENSORS, LAYER_TENSORS, META_KEYS, TOKENIZER_KEYS, type MetaKeyDef, type TensorDef } from './schema.js';

const esc = (s: string) => s.replace(/\|/g, '\\|');

function metaTable(keys: readonly MetaKeyDef[]): string[] {
  return [
    '| key | type | from | meaning |',
    '|---|---|---|---|',
    ...keys.map((k) => `| \`${k.key}\` | ${k.kind}${k.optional ? ' (optional)' : ''} | ${esc(k.source)} | ${esc(k.doc)} |`),
  ];
}

function tensorTable(defs: readonly TensorDef[]): string[] {
  return [
    '| GGUF name | checkpoint name | role | meaning |',
    '|---|---|---|---|',
    ...defs.map((t) => `| \`${t.gguf}\` | \`${t.hf}\`${t.split ? ` (${t.split} rows)` : ''} | ${t.role} | ${esc(t.doc)} |`),
  ];
}

export function renderLayoutDoc(): string {
  return [
    '<!-- Generated from src/model/schema.ts by scripts/gen-gguf-doc.mjs. Do not edit by hand. -->',
    '# HoVLE GGUF layout',
    '',
    'One file holds the whole model: hyperparameters of both decoder segments, the vision front end,',
    'the chat template, the tokenizer (standard `tokenizer.ggml.*` keys, readable by other GGUF tools)',
    'and every tensor. Dimensions are in ggml order (ne0, the contiguous one, first); element order is',
    "the checkpoint's, nothing is transposed. Keys without `.embedding.` describe the language model.",
    '',
    '## Metadata',
    '',
    ...metaTable(META_KEYS),
    '',
    '## Tokenizer metadata',
    '',
    ...metaTable(TOKENIZER_KEYS),
    '',
    '## Tensors',
    '',
    'Global tensors:',
    '',
    ...tensorTable(GLOBAL_TENSORS),
    '',
    'Per layer. The 32-layer stack is numbered as one: `blk.0` .. `blk.{E-1}` are the embedding',
    "module's layers (checkpoint index i = block), `blk.{E}` .. are the language model's (i = block - E).",
    '',
    ...tensorTable([...LAYER_TENSORS.embedding, ...LAYER_TENSORS.llm]),
    '',
    '`wqkv` rows are grouped per KV head h as `[q heads h*g .. h*g+g-1, k_h, v_h]`, head_dim rows each',
    '(g = heads / kv_heads); the converter gathers them into separate Q, K and V matrices.',
    '',
    'Checkpoint tensors that are validated but not written:',
    '',
    '| checkpoint name | why |',
    '|---|---|',
    ...IGNORED_HF_TENSORS.map((t) => `| \`${t.hf}\` | ${esc(t.why)} |`),
    '',
    '## File types',
    '',
    '`general.file_type` codes: ' + FILE_TYPES.map((t) => `${t} = ${FILE_TYPE_CODE[t]}`).join(', ') + '.',
    'Per-tensor types follow `tensorType()` in `src/convert/type-policy.ts` (its comment states the rule).',
    '',
  ].join('\n');
}
