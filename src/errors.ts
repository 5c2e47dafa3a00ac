/** Every failure hovle reports, from JS validation or from native code, is a HovleError. */
export type HovleErrorCode =
  /** No compiled addon where the loader looked. */
  | 'ADDON_NOT_BUILT'
  /** The addon was built for another hovle version or native API. */
  | 'ADDON_MISMATCH'
  /** The OS refused to load the addon (missing shared library, wrong architecture...). */
  | 'ADDON_LOAD_FAILED'
  /** This CPU lacks instructions the addon was compiled to use. */
  | 'CPU_UNSUPPORTED'
  | 'DEVICE_NOT_FOUND'
  | 'BACKEND_INIT_FAILED'
  | 'OP_UNSUPPORTED'
  | 'OUT_OF_MEMORY'
  | 'OUT_OF_DEVICE_MEMORY'
  | 'COMPUTE_FAILED'
  | 'INVALID_ARGUMENT'
  /** A GGUF file is malformed, truncated or not a HoVLE model. */
  | 'GGUF_INVALID'
  /** A Hugging Face checkpoint is incomplete or does not match its config. */
  | 'CHECKPOINT_INVALID'
  /** Reading or writing a file failed. */
  | 'IO_ERROR'
  /** A download from the Hugging Face hub failed: HTTP error, access refused, connection lost for good, or bytes that do not match the hub's size or sha256. */
  | 'DOWNLOAD_FAILED'
  /** The caller's AbortSignal fired. */
  | 'ABORTED'
  /** A call on a model or context after dispose(). */
  | 'DISPOSED'
  /** Two calls on one context overlapped. */
  | 'BUSY'
  /** The input does not fit the context window. */
  | 'CONTEXT_FULL'
  /** An image could not be read or decoded (truncated, corrupt, unsupported format). */
  | 'IMAGE_INVALID'
  /** An image exceeds the pixel or byte limit. */
  | 'IMAGE_TOO_LARGE'
  | 'INTERNAL';

export class HovleError extends Error {
  readonly code: HovleErrorCode;
  /**
   * The option at fault, as the JS API spells it (e.g. "logitBias"), where one is: the server
   * reports it as OpenAI's `param`, in snake case.
   */
  readonly param?: string;

  // (code, message) order because native code constructs it with exactly these two arguments.
  constructor(code: HovleErrorCode, message: string, options?: { cause?: unknown; param?: string }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'HovleError';
    this.code = code;
    if (options?.param !== undefined) this.param = options.param;
  }
}
