// image_url values to image inputs. data: URLs are decoded here; local paths are opened only
// inside the directory the operator allowed (symlinks resolved first, so a link cannot lead
// out of it); http(s) URLs are refused: the server is meant to run offline and must not become
// a way to make it fetch arbitrary addresses.
import { realpath, stat } from 'node:fs/promises';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { ImageInput } from '../image/preprocess.js';
import { badRequest } from './api-error.js';

export interface ImageUrlOptions {
  /** Directory local image paths (absolute, relative to it, or file: URLs) may come from; unset refuses them. */
  allowLocalFiles?: string;
  /** Largest encoded image. */
  maxBytes: number;
}

const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;
const IMAGE_MIME = /^(image\/[\w.+-]+|application\/octet-stream)$/i;

function decodeDataUrl(url: string, param: string, maxBytes: number): ImageInput {
  const comma = url.indexOf(',');
  if (comma < 0) throw badRequest('malformed data: URL (no comma)', param, 'invalid_image_url');
  const [mime = '', ...flags] = url.slice(5, comma).split(';');
  if (!IMAGE_MIME.test(mime.trim())) throw badRequest(`data: URL type '${mime}' is not an image type`, param, 'invalid_image_url');
  let payload = url.slice(comma + 1);
  let buffer: Buffer;
  if (flags.some((f) => f.trim().toLowerCase() === 'base64')) {
    if (!BASE64.test(payload)) payload = payload.replace(/\s+/g, '');
    if (!BASE64.test(payload)) throw badRequest('the data: URL is not valid base64', param, 'invalid_image_url');
    if (Math.floor((payload.length * 3) / 4) > maxBytes + 2) throw badRequest(`the image is over ${maxBytes} bytes`, param, 'IMAGE_TOO_LARGE');
    buffer = Buffer.from(payload, 'base64');
  } else {
    // Each %XX is one byte of the image (decodeURIComponent would read them as UTF-8 and refuse
    // %FF); a URL is ASCII, so any other character is taken as the byte it is.
    if (/%(?![0-9a-fA-F]{2})/.test(payload)) throw badRequest('the data: URL has invalid percent-encoding', param, 'invalid_image_url');
    if (/[^\x00-\x7f]/.test(payload)) throw badRequest('the data: URL holds characters outside ASCII (percent-encode them)', param, 'invalid_image_url');
    buffer = Buffer.from(payload.replace(/%([0-9a-fA-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1');
  }
  if (buffer.length === 0) throw badRequest('the data: URL holds no image', param, 'invalid_image_url');
  if (buffer.length > maxBytes) throw badRequest(`the image is over ${maxBytes} bytes`, param, 'IMAGE_TOO_LARGE');
  return { buffer };
}

async function localFile(url: string, param: string, options: ImageUrlOptions): Promise<ImageInput> {
  if (!options.allowLocalFiles) {
    throw badRequest('local image paths are disabled (start the server with --allow-local-files DIR); send a data: URL', param, 'local_files_disabled');
  }
  const root = await realpath(options.allowLocalFiles);
  let path: string;
  try {
    path = url.startsWith('file:') ? fileURLToPath(url) : url;
    path = await realpath(resolve(root, path));
  } catch {
    throw badRequest(`no such image: ${url}`, param, 'image_not_found');
  }
  const rel = relative(root, path);
  if (rel === '..' || rel.startsWith('..' + sep) || isAbsolute(rel)) throw badRequest(`${url} is outside the allowed image directory`, param, 'local_file_forbidden');
  const s = await stat(path);
  if (!s.isFile()) throw badRequest(`${url} is not a file`, param, 'image_not_found');
  if (s.size > options.maxBytes) throw badRequest(`the image is over ${options.maxBytes} bytes`, param, 'IMAGE_TOO_LARGE');
  return { file: path };
}

export async function resolveImageUrl(url: string, param: string, options: ImageUrlOptions): Promise<ImageInput> {
  if (!url) throw badRequest('the image URL is empty', param, 'invalid_image_url');
  const scheme = /^([a-z][a-z0-9+.-]+):/i.exec(url)?.[1]?.toLowerCase();
  if (scheme === 'data') return decodeDataUrl(url, param, options.maxBytes);
  if (scheme === 'http' || scheme === 'https') {
    throw badRequest('remote image URLs are not fetched (hovle serve works offline); send the image as a data: URL', param, 'image_url_unsupported');
  }
  // One-letter "schemes" are Windows drive letters.
  if (scheme === undefined || scheme === 'file') return localFile(url, param, options);
  throw badRequest(`'${scheme}:' image URLs are not supported (data: URLs${options.allowLocalFiles ? ', local paths' : ''})`, param, 'image_url_unsupported');
}
