// HoVLE/InternVL grounding output: <ref>label</ref><box>[[x1, y1, x2, y2], ...]</box> with
// coordinates normalised to 0..1000, turned into boxes in the source image's pixels.
export interface GroundedBox {
  label: string;
  /** Pixels of the source image: left, top, right, bottom. */
  box: [number, number, number, number];
  /** As the model wrote it, 0..1000. */
  normalized: [number, number, number, number];
}

/**
 * The markup of grounded answers. The tokenizer lists these among its special tokens, but they
 * are the answer's content: an answer's text renders them (and no other special token).
 */
export const GROUNDING_TAGS: readonly string[] = ['<ref>', '</ref>', '<box>', '</box>', '<quad>', '</quad>'];

const PATTERN = /<ref>(.*?)<\/ref>\s*<box>\s*(\[\[.*?\]\])\s*<\/box>/gs;

export function parseGrounding(text: string, image: { width: number; height: number }): GroundedBox[] {
  const out: GroundedBox[] = [];
  for (const m of text.matchAll(PATTERN)) {
    let coords: unknown;
    try {
      coords = JSON.parse(m[2]!);
    } catch {
      continue; // malformed box text from the model: skip it rather than fail the answer
    }
    if (!Array.isArray(coords)) continue;
    for (const c of coords) {
      if (!Array.isArray(c) || c.length !== 4 || !c.every((v) => typeof v === 'number' && Number.isFinite(v))) continue;
      const n = c.map((v: number) => Math.min(1000, Math.max(0, v))) as [number, number, number, number];
      out.push({
        label: m[1]!.trim(),
        normalized: n,
        box: [(n[0] * image.width) / 1000, (n[1] * image.height) / 1000, (n[2] * image.width) / 1000, (n[3] * image.height) / 1000],
      });
    }
  }
  return out;
}

/** InternVL's prompt for locating an object: the answer comes back as <ref>…</ref><box>…</box>. */
export function groundingPrompt(object: string): string {
  return `Please provide the bounding box coordinate of the region this sentence describes: <ref>${object}</ref>`;
}
