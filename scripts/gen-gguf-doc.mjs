#!/usr/bin/env node
// Writes docs/gguf-layout.md from the schema table (needs `npm run build:ts` first).
import { writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { renderLayoutDoc } from '../dist/model/layout-doc.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
writeFileSync(join(root, 'docs', 'gguf-layout.md'), renderLayoutDoc());
