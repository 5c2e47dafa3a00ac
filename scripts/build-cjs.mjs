#!/usr/bin/env node
// Makes dist/index.cjs for CommonJS consumers (`require('hovle')`) from the ESM output of tsc,
// and marks the CLI entry executable.
// import.meta.url is mapped to the bundle's own file URL, so paths.ts resolves the same root.
import { build } from 'esbuild';
import { chmodSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
await build({
  entryPoints: [join(root, 'dist', 'index.js')],
  outfile: join(root, 'dist', 'index.cjs'),
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  packages: 'external',
  define: { 'import.meta.url': '__hovleImportMetaUrl' },
  banner: { js: "const __hovleImportMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
  logLevel: 'warning',
});

// npm marks bin files executable when it installs a package, but not in the package's own
// checkout, where `npx hovle` runs dist/cli/main.js directly.
chmodSync(join(root, 'dist', 'cli', 'main.js'), 0o755);
