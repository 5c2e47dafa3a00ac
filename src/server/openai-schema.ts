// Validation of a Chat Completions request and its mapping onto a hovle conversation. OpenAI's
// own rules where it has them (value ranges, refusing unknown arguments), so a client mistake is
// a 400 naming the parameter rather than a silently different answer.
import type { AskOptions } from '../session/session.js';
import { badRequest } from './api-error.js';

export interface ImageRef {
  url: string;
  /** Where it was in the request, for error messages (e.g. "messages[1].content[0].image_url.url"). */
  param: string;
}

export interface ChatTurn {
  text: string;
  images: ImageRef[];
}

export type GenerationOptions = Omit<AskOptions, 'signal' | 'onToken'>;

export interface ChatRequest {
  model: string;
  /** Replaces the model's default system message. */
  system?: string;
  /** Finished exchanges before the question, oldest first. */
  history: Array<{ user: ChatTurn; assistant: string }>;
  prompt: ChatTurn;
  generation: GenerationOptions;
  stream: boolean;
  includeUsage: boolean;
}

export interface SchemaLimits {
  /** Images in the whole conversation. */
  maxImages: number;
  /** Highest `max_tiles` a request may ask for. */
  maxTiles: number;
}

// Accepted and without effect here: bookkeeping for OpenAI's platform.
const IGNORED = new Set(['user', 'store', 'metadata', 'service_tier', 'safety_identifier', 'prompt_cache_key', 'parallel_tool_calls', 'stream_options']);

// Accepted only with the value that asks for nothing beyond plain text generation.
const PLAIN_ONLY: Record<string, (v: unknown) => boolean> = {
  n: (v) => v === 1,
  logprobs: (v) => v === false,
  top_logprobs: (v) => v === 0,
  tools: (v) => Array.isArray(v) && v.length === 0,
  functions: (v) => Array.isArray(v) && v.length === 0,
  tool_choice: (v) => v === 'none',
  function_call: (v) => v === 'none',
  response_format: (v) => isObject(v) && v.type === 'text',
  modalities: (v) => Array.isArray(v) && v.every((m) => m === 'text'),
  audio: () => false,
  prediction: () => false,
  reasoning_effort: () => false,
  web_search_options: () => false,
  verbosity: () => false,
};

const SUPPORTED = new Set([
  'model', 'messages', 'stream', 'temperature', 'top_p', 'max_tokens', 'max_completion_tokens', 'seed', 'stop',
  'presence_penalty', 'frequency_penalty', 'logit_bias',
  // hovle extensions (llama.cpp's spelling where it has one).
  'top_k', 'min_p', 'repeat_penalty', 'max_tiles',
]);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function number(body: Record<string, unknown>, key: string, lo: number, hi: number): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !(v >= lo && v <= hi)) throw badRequest(`${key} must be a number in [${lo}, ${hi}]`, key);
  return v;
}

/** A number in (0, hi]: a repeat penalty of 0 divides by zero. */
function positive(body: Record<string, unknown>, key: string, hi: number): number | undefined {
  const v = number(body, key, 0, hi);
  if (v === 0) throw badRequest(`${key} must be a number in (0, ${hi}]`, key);
  return v;
}

function integer(body: Record<string, unknown>, key: string, lo: number, hi = Number.MAX_SAFE_INTEGER): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < lo || v > hi) {
    throw badRequest(`${key} must be an integer${hi === Number.MAX_SAFE_INTEGER ? ` >= ${lo}` : ` in [${lo}, ${hi}]`}`, key);
  }
  return v;
}

function stops(v: unknown): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.length > 16 || !list.every((s) => typeof s === 'string' && s.length > 0)) {
    throw badRequest('stop must be a non-empty string or an array of at most 16 of them', 'stop');
  }
  return list as string[];
}

function logitBias(v: unknown): Record<number, number> | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw badRequest('logit_bias must map token ids to numbers in [-100, 100]', 'logit_bias');
  const out: Record<number, number> = {};
  for (const [k, b] of Object.entries(v)) {
    if (!/^\d+$/.test(k) || typeof b !== 'number' || !(b >= -100 && b <= 100)) {
      throw badRequest(`logit_bias: '${k}' must be a token id mapped to a number in [-100, 100]`, 'logit_bias');
    }
    out[Number(k)] = b;
  }
  return out;
}

function generation(body: Record<string, unknown>, limits: SchemaLimits): GenerationOptions {
  const maxTokens = integer(body, 'max_completion_tokens', 1) ?? integer(body, 'max_tokens', 1);
  const seed = integer(body, 'seed', Number.MIN_SAFE_INTEGER);
  const o: GenerationOptions = {
    // OpenAI's default is 1; greedy matches `hovle ask` and keeps a robot's answers repeatable.
    temperature: number(body, 'temperature', 0, 2) ?? 0,
    topP: number(body, 'top_p', 0, 1),
    topK: integer(body, 'top_k', 0),
    minP: number(body, 'min_p', 0, 1),
    repeatPenalty: positive(body, 'repeat_penalty', 10),
    presencePenalty: number(body, 'presence_penalty', -2, 2),
    frequencyPenalty: number(body, 'frequency_penalty', -2, 2),
    logitBias: logitBias(body.logit_bias),
    stop: stops(body.stop),
    maxTokens,
    maxTiles: integer(body, 'max_tiles', 1, limits.maxTiles),
    // OpenAI takes any integer, the sampler a non-negative one: a negative seed is taken modulo
    // 2^32 (every bit of a non-negative one counts).
    seed: seed === undefined ? undefined : seed >= 0 ? seed : ((seed % 2 ** 32) + 2 ** 32) % 2 ** 32,
  };
  for (const k of Object.keys(o) as Array<keyof GenerationOptions>) if (o[k] === undefined) delete o[k];
  return o;
}

type Role = 'system' | 'user' | 'assistant';

/** A message's text and images; `allowImages` only for user turns. */
function content(v: unknown, param: string, allowImages: boolean): ChatTurn {
  if (typeof v === 'string') return { text: v, images: [] };
  if (!Array.isArray(v)) throw badRequest('content must be a string or an array of content parts', param);
  const texts: string[] = [];
  const images: ImageRef[] = [];
  v.forEach((part: unknown, j) => {
    const p = `${param}[${j}]`;
    if (!isObject(part)) throw badRequest('a content part must be an object', p);
    if ((part.type === 'text' || part.type === 'refusal') && typeof part[part.type] === 'string') texts.push(part[part.type] as string);
    else if (part.type === 'image_url' && allowImages) {
      const iu = part.image_url;
      if (!isObject(iu) || typeof iu.url !== 'string') throw badRequest('image_url must be { url }', `${p}.image_url`);
      if (iu.detail !== undefined && iu.detail !== null && !['auto', 'low', 'high'].includes(iu.detail as string)) {
        throw badRequest("detail must be 'auto', 'low' or 'high'", `${p}.image_url.detail`);
      }
      images.push({ url: iu.url, param: `${p}.image_url.url` });
    } else {
      const what = typeof part.type === 'string' ? `'${part.type}' content parts are` : 'this content part is';
      throw badRequest(`${what} not supported here (text${allowImages ? ' and image_url' : ''} only)`, p, 'unsupported_content');
    }
  });
  return { text: texts.join('\n'), images };
}

/** System messages first, then user and assistant turns ending with the user's; consecutive turns of one role are joined. */
function conversation(messages: unknown, maxImages: number): Pick<ChatRequest, 'system' | 'history' | 'prompt'> {
  if (!Array.isArray(messages) || messages.length === 0) throw badRequest('messages must be a non-empty array', 'messages');
  const systems: string[] = [];
  let images = 0;
  const turns: Array<{ role: 'user' | 'assistant'; turn: ChatTurn }> = [];
  messages.forEach((m: unknown, i) => {
    const param = `messages[${i}]`;
    if (!isObject(m)) throw badRequest('a message must be an object', param);
    const role = m.role === 'developer' ? 'system' : m.role;
    if (role !== 'system' && role !== 'user' && role !== 'assistant') {
      throw badRequest(`role '${String(m.role)}' is not supported (system, developer, user, assistant)`, `${param}.role`, 'unsupported_value');
    }
    for (const k of ['tool_calls', 'function_call', 'audio']) {
      if (m[k] !== undefined && m[k] !== null) throw badRequest(`${k} is not supported`, `${param}.${k}`, 'unsupported_parameter');
    }
    const c = (role as Role) === 'assistant' && (m.content === null || m.content === undefined) ? '' : m.content;
    const turn = content(c, `${param}.content`, role === 'user');
    if (role === 'system') {
      if (turns.length) throw badRequest('system messages must come before the conversation (the chat template has one system block)', param);
      systems.push(turn.text);
      return;
    }
    images += turn.images.length;
    // Counted as the messages are read: thousands of image parts are refused at the first one
    // over the limit, not after all of them are parsed and merged.
    if (images > maxImages) throw badRequest(`more than ${maxImages} images; this server takes at most ${maxImages} per request`, 'messages', 'too_many_images');
    const last = turns[turns.length - 1];
    if (last?.role === role) {
      // In place: copying the merged list for each of N consecutive messages took O(N^2).
      last.turn.text += '\n' + turn.text;
      last.turn.images.push(...turn.images);
    } else {
      if (!last && role === 'assistant') throw badRequest('the conversation must start with a user message', param);
      turns.push({ role, turn });
    }
  });
  const prompt = turns.pop();
  if (!prompt || prompt.role !== 'user') throw badRequest('the last message must be from the user', 'messages');
  const history: ChatRequest['history'] = [];
  for (let i = 0; i < turns.length; i += 2) history.push({ user: turns[i]!.turn, assistant: turns[i + 1]!.turn.text });
  return { ...(systems.length ? { system: systems.join('\n') } : {}), history, prompt: prompt.turn };
}

export function parseChatRequest(body: unknown, limits: SchemaLimits): ChatRequest {
  if (!isObject(body)) throw badRequest('the body must be a JSON object');
  for (const [k, v] of Object.entries(body)) {
    if (SUPPORTED.has(k) || IGNORED.has(k) || v === null) continue;
    // Own keys only: "constructor" or "__proto__" in a body must not find Object.prototype's.
    const plain = Object.hasOwn(PLAIN_ONLY, k) ? PLAIN_ONLY[k] : undefined;
    if (plain) {
      if (!plain(v)) throw badRequest(`${k} is not supported by this server`, k, 'unsupported_parameter');
    } else throw badRequest(`unrecognized request argument: ${k}`, k, 'unknown_parameter');
  }
  if (typeof body.model !== 'string' || !body.model) throw badRequest('model is required', 'model');
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean') throw badRequest('stream must be a boolean', 'stream');
  const so = body.stream_options;
  if (so !== undefined && so !== null && !isObject(so)) throw badRequest('stream_options must be an object', 'stream_options');
  const conv = conversation(body.messages, limits.maxImages);
  return {
    model: body.model,
    ...conv,
    generation: generation(body, limits),
    stream: body.stream === true,
    includeUsage: isObject(so) && so.include_usage === true,
  };
}
