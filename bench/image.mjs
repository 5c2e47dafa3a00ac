#!/usr/bin/env node
// Image preprocessing cost: a 12-megapixel JPEG into 12+1 tiles, and a 640x480 raw RGB camera
// frame into 1 tile. Median of 5 runs, min and max. Without a JPEG argument, one is synthesised
// with `cjpeg` (Debian: libjpeg-turbo-progs).
//   node bench/image.mjs [photo-12mp.jpg]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { preprocessImage } from '../dist/index.js';
import { loadAddon } from '../dist/native/load.js';

function pattern(w, h, channels) {
  const data = Buffer.alloc(w * h * channels);
  let s = 1;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      const o = (y * w + x) * channels;
      data[o] = (x * 255) / w;
      data[o + 1] = (y * 255) / h;
      data[o + 2] = (s >>> 24) & 0xff;
    }
  }
  return data;
}

let jpeg = process.argv[2];
if (!jpeg) {
  const dir = mkdtempSync(join(tmpdir(), 'hovle-bench-'));
  const ppm = join(dir, 'photo.ppm');
  writeFileSync(ppm, Buffer.concat([Buffer.from('P6\n4000 3000\n255\n'), pattern(4000, 3000, 3)]));
  jpeg = join(dir, 'photo.jpg');
  execFileSync('cjpeg', ['-quality', '90', '-outfile', jpeg, ppm]);
}

async function time(label, fn) {
  const ms = [];
  let last;
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    last = await fn();
    ms.push(performance.now() - t);
  }
  ms.sort((a, b) => a - b);
  return { label, tiles: last.tiles, grid: last.grid.join('x'), medianMs: +ms[2].toFixed(1), minMs: +ms[0].toFixed(1), maxMs: +ms[4].toFixed(1) };
}

const raw = { data: pattern(640, 480, 3), width: 640, height: 480, format: 'rgb' };
const rows = [
  await time('12 MP JPEG (4000x3000), max 12 tiles', () => preprocessImage(jpeg, { maxTiles: 12 })),
  await time('640x480 raw RGB frame, max 1 tile', () => preprocessImage({ raw }, { maxTiles: 1 })),
];
console.log(`JPEG decoder: ${loadAddon().info.jpegDecoder}`);
console.table(rows);
