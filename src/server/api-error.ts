// Failures as OpenAI reports them: an HTTP status and {error: {message, type, param, code}}, so
// client libraries raise their usual typed errors (BadRequestError, RateLimitError...).
import { HovleError, type HovleErrorCode } from '../errors.js';

export interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string | null,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }

  get type(): string {
    if (this.status === 401) return 'authentication_error';
    if (this.status === 429) return 'rate_limit_error';
    return this.status >= 500 ? 'server_error' : 'invalid_request_error';
  }

  body(): ErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export const badRequest = (message: string, param: string | null = null, code = 'invalid_value') => new ApiError(400, message, code, param);

// What the request itself got wrong (a bad image, too long a prompt); anything else is ours.
const CLIENT_CODES: ReadonlySet<HovleErrorCode> = new Set(['INVALID_ARGUMENT', 'IMAGE_INVALID', 'IMAGE_TOO_LARGE', 'CONTEXT_FULL']);

/** Any failure as an ApiError: HovleErrors keep their code, unknown errors hide their details. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof HovleError) {
    // The JS API's camelCase option names are OpenAI's snake_case ones (logitBias: logit_bias).
    const param = err.param?.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`) ?? null;
    return new ApiError(CLIENT_CODES.has(err.code) ? 400 : 500, err.message, err.code, param);
  }
  return new ApiError(500, 'internal server error', 'internal_error');
}
