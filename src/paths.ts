import { fileURLToPath } from 'node:url';

/**
 * The installed package's root. Both dist/*.js (ESM) and the bundled dist/index.cjs sit one
 * level below it; the CJS bundle maps import.meta.url to its own file (scripts/build-cjs.mjs).
 */
export const packageRoot: string = fileURLToPath(new URL('..', import.meta.url));
