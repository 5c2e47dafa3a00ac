// The "internlm2-chat" conversation template (InternVL's conversation.py, separator style MPT):
//   <|im_start|>system\n{system}<|im_end|><|im_start|>user\n{content}<|im_end|><|im_start|>assistant\n
// with no newline after <|im_end|>. Each <image> placeholder becomes
// <img> + <IMG_CONTEXT> x (256 x tiles) + </img>. The template name and the default system
// message come from the GGUF (hovle.chat.*); this is the only place the format is spelled out.
import { HovleError } from '../errors.js';

export const IMAGE_PLACEHOLDER = '<image>';
export const SUPPORTED_TEMPLATES = ['internlm2-chat'] as const;

export interface TemplateTokens {
  imageStart: string;
  imageEnd: string;
  imageContext: string;
}

/**
 * Text of one user turn's content with `nImages` images: placeholders in order, or one per image
 * up front. Without images the text is only text, `<image>` included (the reference's chat()
 * substitutes placeholders only when it is given pixels); with images, a placeholder count that
 * is neither 0 nor the image count is refused rather than guessed at.
 */
export function userContent(text: string, nImages: number): string {
  if (nImages === 0) return text;
  const placeholders = text.split(IMAGE_PLACEHOLDER).length - 1;
  if (placeholders === nImages) return text;
  if (placeholders === 0) return `${IMAGE_PLACEHOLDER}\n`.repeat(nImages) + text;
  throw new HovleError('INVALID_ARGUMENT', `the message has ${placeholders} ${IMAGE_PLACEHOLDER} placeholders but ${nImages} images`);
}

/**
 * Refuses `text` (what the caller wrote: a message, a reply, a system prompt) that spells the
 * image-context token: it tokenizes as that special id, which stands for an image row, and the
 * rows would not match the images.
 */
export function checkNoImageContext(text: string, what: string, t: TemplateTokens): void {
  if (text.includes(t.imageContext)) {
    throw new HovleError('INVALID_ARGUMENT', `the ${what} contains the text ${t.imageContext}, a token that only stands for image rows`);
  }
}

/** Replaces the placeholders of userContent(text, tilesPerImage.length) with image blocks. */
export function expandImages(content: string, tilesPerImage: readonly number[], tokensPerTile: number, t: TemplateTokens): string {
  if (tilesPerImage.length === 0) return content;
  let i = 0;
  return content.split(IMAGE_PLACEHOLDER).reduce((acc, part, k) => {
    if (k === 0) return part;
    const block = t.imageStart + t.imageContext.repeat(tokensPerTile * tilesPerImage[i++]!) + t.imageEnd;
    return acc + block + part;
  }, '');
}

export function checkTemplate(name: string): void {
  if (!SUPPORTED_TEMPLATES.includes(name as never)) {
    throw new HovleError('GGUF_INVALID', `chat template '${name}' is not supported (known: ${SUPPORTED_TEMPLATES.join(', ')})`);
  }
}

/** The system block that opens a conversation. */
export function systemTurn(system: string): string {
  return `<|im_start|>system\n${system}<|im_end|>`;
}

/** Opens a user turn; its content (images expanded) follows. */
export const USER_START = '<|im_start|>user\n';
/** Ends any turn (no newline after it in this template). */
export const END_OF_TURN = '<|im_end|>';
/** Opens the assistant's answer. */
export const ASSISTANT_START = '<|im_start|>assistant\n';
