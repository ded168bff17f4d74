import type { LlmTokenizer } from './tokenizer.js';

/*
 * The visible text of a generation, token by token: what streaming shows, where a stop string
 * ends the output, and the final text. Generation and the re-check both use it, so "the stop
 * string was completed by exactly the last token" means the same thing to both.
 */

/** What pushing one token gives. */
export type TextStep = {
  /** Text now safe to show: complete UTF-8, and no suffix that could still begin a stop string. */
  readonly delta: string;
  /** A stop string is complete: the output ends with this token, its text before the stop string. */
  readonly stopped: boolean;
};

export type TextStream = {
  push(id: number): TextStep;
  /** The end of the output (EOS or max tokens): whatever was held back, shown now. */
  end(): string;
  /** Every delta so far, concatenated. */
  readonly text: string;
};

/** Decoded text of a growing id sequence: the new complete text each token adds. */
type Detokenizer = { push(id: number): string; end(): string };

export function createTextStream(tok: LlmTokenizer, stop: readonly string[]): TextStream {
  const detok = tok.byteLevel ? byteLevelDetokenizer(tok) : wholeDetokenizer(tok);
  const stops = stop.filter((s) => s.length > 0);
  let decoded = ''; // all complete text so far
  let emitted = 0; // how much of it was shown
  let stopped = false;
  return {
    push(id) {
      if (stopped) throw new Error('bug: a token pushed after the stop string');
      decoded += detok.push(id);
      // An occurrence cannot start before `emitted`: a text that began one was held back.
      let cut = -1;
      for (const s of stops) {
        const at = decoded.indexOf(s, emitted);
        if (at >= 0 && (cut < 0 || at < cut)) cut = at;
      }
      if (cut >= 0) {
        stopped = true;
        const delta = decoded.slice(emitted, cut);
        decoded = decoded.slice(0, cut);
        emitted = cut;
        return { delta, stopped };
      }
      const safe = decoded.length - heldBack(decoded, emitted, stops);
      const delta = decoded.slice(emitted, safe);
      emitted = safe;
      return { delta, stopped };
    },
    end() {
      if (stopped) return '';
      decoded += detok.end();
      const delta = decoded.slice(emitted);
      emitted = decoded.length;
      return delta;
    },
    get text() {
      return decoded.slice(0, emitted);
    },
  };
}

/** The length of the longest suffix of decoded[from..] that is a proper prefix of a stop string. */
function heldBack(decoded: string, from: number, stops: readonly string[]): number {
  let hold = 0;
  for (const s of stops) {
    for (let k = Math.min(s.length - 1, decoded.length - from); k > hold; k--) {
      if (decoded.endsWith(s.slice(0, k))) {
        hold = k;
        break;
      }
    }
  }
  return hold;
}

/**
 * Byte-level BPE: a token is bytes, and the text is their UTF-8 decoding, an incomplete sequence
 * held until it completes. As tokenizers.js decodes: special tokens are skipped, and an added token
 * is its own text (bytes pending before it decode on their own, invalid ones as U+FFFD).
 */
function byteLevelDetokenizer(tok: LlmTokenizer): Detokenizer {
  let utf8 = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
  const flush = () => {
    const rest = utf8.decode();
    utf8 = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
    return rest;
  };
  return {
    push(id) {
      if (tok.specialIds.has(id)) return '';
      if (tok.isAdded(id)) return flush() + new TextDecoder().decode(tok.bytesOf(id));
      return utf8.decode(tok.bytesOf(id), { stream: true });
    },
    end: flush,
  };
}

/**
 * Any other tokenizer: the whole visible sequence is decoded again at each token and the new part
 * taken, a trailing U+FFFD (maybe an incomplete character) held until the next token. Quadratic in
 * the output length, and exact only for decoders whose text of a prefix is a prefix of the text.
 */
function wholeDetokenizer(tok: LlmTokenizer): Detokenizer {
  const ids: number[] = [];
  let shown = '';
  const decode = () => (ids.length === 0 ? '' : tok.tokenizer.decode(ids, { skip_special_tokens: true }));
  return {
    push(id) {
      ids.push(id);
      let text = decode();
      while (text.endsWith('\uFFFD')) text = text.slice(0, -1);
      if (!text.startsWith(shown) || text.length <= shown.length) return '';
      const delta = text.slice(shown.length);
      shown = text;
      return delta;
    },
    end() {
      const text = decode();
      const delta = text.startsWith(shown) ? text.slice(shown.length) : '';
      shown = text;
      return delta;
    },
  };
}
