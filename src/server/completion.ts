// One chat completion on a fresh Session: replay the client's history, generate, and answer as
// one JSON object or as chat.completion.chunk events.
import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';

import type { HovleModel } from '../runtime/model.js';
import { Session, type AskResult, type SessionOptions, type UserMessage } from '../session/session.js';
import { ApiError, toApiError } from './api-error.js';
import { sendJson } from './http.js';
import type { GenerationOptions } from './openai-schema.js';
import { drained, endSse, sendEvent, startSse } from './sse.js';

export interface Conversation {
  system?: string;
  history: Array<{ user: UserMessage; assistant: string }>;
  prompt: UserMessage;
}

export interface CompletionJob {
  model: HovleModel;
  modelName: string;
  session: Omit<SessionOptions, 'system'>;
  conversation: Conversation;
  generation: GenerationOptions;
  maxPixels?: number;
  stream: boolean;
  includeUsage: boolean;
  /** How long a streaming client may leave sent events unread before it is dropped. */
  writeTimeoutMs: number;
  /** Fires when the client leaves or the server stops waiting; its reason, if an ApiError, is reported. */
  signal: AbortSignal;
}

export interface CompletionSummary {
  promptTokens: number;
  completionTokens: number;
  finishReason: FinishReason;
}

type FinishReason = 'stop' | 'length';

const FINISH: Record<AskResult['stopReason'], FinishReason> = { eos: 'stop', stop: 'stop', maxTokens: 'length', contextFull: 'length' };

function usage(promptTokens: number, completionTokens: number) {
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

/** Answers the request on `res`; the summary is null when a stream ended early with an error event. */
export async function runCompletion(res: ServerResponse, job: CompletionJob): Promise<CompletionSummary | null> {
  const { conversation: conv, signal } = job;
  const id = `chatcmpl-${randomUUID().replaceAll('-', '')}`;
  const created = Math.floor(Date.now() / 1000);
  const session = await Session.create(job.model, { ...job.session, ...(conv.system !== undefined ? { system: conv.system } : {}) });
  try {
    const turn = {
      signal,
      ...(job.generation.maxTiles !== undefined ? { maxTiles: job.generation.maxTiles } : {}),
      ...(job.maxPixels !== undefined ? { maxPixels: job.maxPixels } : {}),
    };
    let promptTokens = 0;
    for (const h of conv.history) promptTokens += (await session.appendExchange(h.user, h.assistant, turn)).promptTokens;
    const gen = session.stream(conv.prompt, {
      ...job.generation,
      ...turn,
      // Without max_tokens OpenAI generates until the model stops or the context is full.
      maxTokens: job.generation.maxTokens ?? Number.MAX_SAFE_INTEGER,
    });
    // The first step runs the image preprocessing and the prefill: its failures (a corrupt image,
    // a prompt over the context) still get a plain JSON error with its status, even when streaming.
    let r = await gen.next();

    if (!job.stream) {
      while (!r.done) r = await gen.next();
      const result = r.value;
      promptTokens += result.stats.promptTokens;
      const finishReason = FINISH[result.stopReason];
      sendJson(res, 200, {
        id,
        object: 'chat.completion',
        created,
        model: job.modelName,
        system_fingerprint: null,
        choices: [{ index: 0, message: { role: 'assistant', content: result.text, refusal: null }, logprobs: null, finish_reason: finishReason }],
        usage: usage(promptTokens, result.tokens.length),
      });
      return { promptTokens, completionTokens: result.tokens.length, finishReason };
    }

    const chunk = (delta: object, finishReason: FinishReason | null) => ({
      id,
      object: 'chat.completion.chunk',
      created,
      model: job.modelName,
      system_fingerprint: null,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
      // OpenAI sends usage: null on every chunk once usage was asked for.
      ...(job.includeUsage ? { usage: null } : {}),
    });
    startSse(res);
    sendEvent(res, chunk({ role: 'assistant', content: '' }, null));
    try {
      while (!r.done) {
        // A client that reads slowly gets tokens as fast as it takes them: the next one is not
        // computed while earlier ones wait in the response's buffer.
        if (!sendEvent(res, chunk({ content: r.value }, null))) await drained(res, job.writeTimeoutMs, signal);
        r = await gen.next();
      }
    } catch (err) {
      if (err instanceof ApiError && err.code === 'client_stalled') {
        // Nothing more can be written to it: drop the connection, free the slot.
        res.destroy();
        throw err;
      }
      // The status line is gone: report the failure as an event, as OpenAI does mid-stream.
      if (!res.destroyed) {
        const reason: unknown = signal.reason;
        sendEvent(res, (reason instanceof ApiError && signal.aborted ? reason : toApiError(err)).body());
        res.end();
      }
      return null;
    }
    const result = r.value;
    promptTokens += result.stats.promptTokens;
    const finishReason = FINISH[result.stopReason];
    sendEvent(res, chunk({}, finishReason));
    if (job.includeUsage) sendEvent(res, { ...chunk({}, null), choices: [], usage: usage(promptTokens, result.tokens.length) });
    endSse(res);
    return { promptTokens, completionTokens: result.tokens.length, finishReason };
  } finally {
    session.dispose();
  }
}
