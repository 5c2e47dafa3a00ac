// The README's TypeScript samples type-check as a user's code would: each ```ts block is its own
// module importing 'hovle', which resolves through package.json's exports to dist/ (npm test
// builds it first), under module nodenext. A CommonJS file (.cts, module node16) gets types too:
// before TypeScript 5.8 it may not import ES module declarations (TS1471/TS1479).
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';

const root = new URL('..', import.meta.url).pathname;
// Inside the package (no package.json of its own), so 'hovle' is the package's self-reference.
const dir = join(root, '.readme-samples');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function typeErrors(files: string[], options: ts.CompilerOptions): string[] {
  const program = ts.createProgram(files, { strict: true, noEmit: true, skipLibCheck: true, target: ts.ScriptTarget.ES2022, types: ['node'], ...options });
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const where = d.file ? `${d.file.fileName.slice(dir.length + 1)}:${d.file.getLineAndCharacterOfPosition(d.start ?? 0).line + 1}` : '';
    return `${where} TS${d.code}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
  });
}

describe('README samples', () => {
  it('every ts block type-checks against the published types', () => {
    const blocks = [...readFileSync(join(root, 'README.md'), 'utf8').matchAll(/^```ts\n([\s\S]*?)^```/gm)].map((m) => m[1]!);
    expect(blocks.length).toBeGreaterThanOrEqual(5);
    mkdirSync(dir, { recursive: true });
    const files = blocks.map((code, i) => {
      const file = join(dir, `sample-${i + 1}.ts`);
      writeFileSync(file, code);
      return file;
    });
    expect(typeErrors(files, { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext })).toEqual([]);
  });

  it('a CommonJS consumer gets the types of require(\'hovle\')', () => {
    mkdirSync(dir, { recursive: true });
    const file = join(dir, 'consumer.cts');
    writeFileSync(file, [
      "import hovle = require('hovle');",
      'async function main(): Promise<void> {',
      "  const model: hovle.HovleModel = await hovle.loadModel('m.gguf', { backend: 'cpu' });",
      '  const err: hovle.HovleErrorCode = "ABORTED";',
      '  console.log(model.hparams.vocabSize, err, hovle.defaultComputeThreads());',
      '}',
      'void main();',
    ].join('\n'));
    expect(typeErrors([file], { module: ts.ModuleKind.Node16, moduleResolution: ts.ModuleResolutionKind.Node16 })).toEqual([]);
  });
});
