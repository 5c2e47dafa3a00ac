import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';

import { renderLayoutDoc } from '../src/model/layout-doc.js';

it('docs/gguf-layout.md is generated from the schema table and up to date', () => {
  const committed = readFileSync(new URL('../docs/gguf-layout.md', import.meta.url), 'utf8');
  // If this fails: npm run build:ts && node scripts/gen-gguf-doc.mjs
  expect(committed).toBe(renderLayoutDoc());
});
