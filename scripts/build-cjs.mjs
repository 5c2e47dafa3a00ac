#!/usr/bin/env node
// Makes dist/index.cjs for CommonJS consumers (`require('hovle')`) from the ESM output of tsc,
// the declarations they type-check against (dist/cjs/), and marks the CLI entry executable.
// import.meta.url is mapped to the bundle's own file URL, so paths.ts resolves the same root.
import { build } from 'esbuild';
import { chmodSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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

// TypeScript reads dist/*.d.ts as ES module declarations (package.json "type": "module"), which a
// CommonJS file may not import under --module node16 (TS1471/TS1479, TypeScript before 5.8).
// The same declarations under a "type": "commonjs" package.json describe dist/index.cjs.
const cjsTypes = join(root, 'dist', 'cjs');
rmSync(cjsTypes, { recursive: true, force: true });
for (const rel of readdirSync(join(root, 'dist'), { recursive: true, encoding: 'utf8' })) {
  if (!rel.endsWith('.d.ts')) continue;
  const text = readFileSync(join(root, 'dist', rel), 'utf8').replace(/^\/\/# sourceMappingURL=.*$/m, '');
  mkdirSync(dirname(join(cjsTypes, rel)), { recursive: true });
  writeFileSync(join(cjsTypes, rel), text);
}
writeFileSync(join(cjsTypes, 'package.json'), '{ "type": "commonjs" }\n');

// npm marks bin files executable when it installs a package, but not in the package's own
// checkout, where `npx hovle` runs dist/cli/main.js directly.
chmodSync(join(root, 'dist', 'cli', 'main.js'), 0o755);
