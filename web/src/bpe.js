// Byte-level BPE in the tiktoken style, for the text models the page explains: the text is
// split into pieces by the tokenizer's regular expression, each piece becomes its UTF-8 bytes
// and the bytes are merged pair by pair, always the adjacent pair whose concatenation has the
// lowest rank in `mergeable_ranks`, until no pair is in the vocabulary. A token's id is its
// rank. Besides the ids, every token gets the part of the text it came from (its span in
// UTF-16 code units, as JavaScript strings index), so the page can shade the text itself.
//
// The tokenizer file (written by models/export_nanoguard.py) holds `pattern` (the regular
// expression, in the Rust `fancy-regex` dialect tiktoken uses) and `mergeable_ranks` (base64
// of a byte string -> rank).

/** The set of Unicode characters `\s` means in Rust's regex (JavaScript's `\s` adds U+FEFF and lacks U+0085). */
const SPACE = '\\p{White_Space}';
const NOT_SPACE = '\\P{White_Space}';

/**
 * Characters that simple case folding (what a case-insensitive Rust regex and a JavaScript
 * RegExp with the `iu` flags use) maps onto an ASCII letter, besides its two cases: the long
 * s and the Kelvin sign. Used only where the browser has no `(?i:...)` groups.
 */
const FOLDS = { s: '\u017f', k: '\u212a' };

/**
 * The tokenizer's pattern as a JavaScript RegExp source (used with the `u` flag).
 *
 * - `\s` and `\S` become `\p{White_Space}` and `\P{White_Space}`, Rust's meaning of them.
 * - Possessive quantifiers `?+` and `++` become plain `?` and `+`. That is exact for this
 *   tokenizer's pattern, not in general: in `[^\r\n\p{L}\p{N}]?+\p{L}+` the optional
 *   character is never a letter, so giving it back could never let `\p{L}+` match; in
 *   ` ?[^\s\p{L}\p{N}]++[\r\n]*` what follows, `[\r\n]*`, also matches nothing, so the
 *   greedy run never needs to give characters back. A backtracking engine therefore finds
 *   the same match with or without the possessive form. Other possessive forms (`*+`,
 *   `{m,n}+`) are refused rather than guessed at.
 * - With `foldCase`, `(?i:...)` groups (case-insensitive, which older JavaScript engines
 *   lack) become plain groups whose ASCII letters match every case-folding variant. Letters
 *   inside a bracketed class are not rewritten (the nanoguard pattern has `[sdmt]`, which is
 *   why classes of plain ASCII letters are expanded); anything else is refused.
 */
export function translatePattern(pattern, { foldCase = false } = {}) {
  let out = '';
  let i = 0;
  let inClass = false;
  let prevQuantifier = false; // the previous item was a quantifier (so `+` after it is possessive)
  const caseless = []; // for each open group: is it a (?i:...) group being expanded
  const folding = () => foldCase && caseless.includes(true);
  const letterSet = (c) => {
    const lo = c.toLowerCase();
    return lo + lo.toUpperCase() + (FOLDS[lo] ?? '');
  };
  while (i < pattern.length) {
    const c = pattern[i];
    if (c === '\\') {
      const e = pattern[i + 1];
      if (e === undefined) throw new Error('the pattern ends with a lone backslash');
      if (e === 's') out += SPACE;
      else if (e === 'S') out += NOT_SPACE;
      else if ((e === 'p' || e === 'P') && pattern[i + 2] === '{') {
        const end = pattern.indexOf('}', i);
        out += pattern.slice(i, end + 1);
        i = end + 1;
        prevQuantifier = false;
        continue;
      } else out += c + e;
      i += 2;
      prevQuantifier = false;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      if (folding() && /[a-zA-Z]/.test(c)) out += letterSet(c);
      else out += c;
      i += 1;
      continue;
    }
    if (c === '[') {
      inClass = true;
      out += c;
      if (pattern[i + 1] === '^') {
        if (folding()) throw new Error('a negated class inside (?i:...) is not supported');
        out += '^';
        i += 1;
      }
      i += 1;
      prevQuantifier = false;
      continue;
    }
    if (c === '(') {
      if (pattern.startsWith('(?i:', i)) {
        caseless.push(true);
        out += foldCase ? '(?:' : '(?i:';
        i += 4;
      } else {
        caseless.push(false);
        const group = /^\((\?(:|=|!|<=|<!))?/.exec(pattern.slice(i))[0];
        if (pattern[i + 1] === '?' && group.length === 1) {
          throw new Error(`unsupported group syntax at ${pattern.slice(i, i + 4)}`);
        }
        out += group;
        i += group.length;
      }
      prevQuantifier = false;
      continue;
    }
    if (c === ')') {
      caseless.pop();
      out += c;
      i += 1;
      prevQuantifier = false; // a group can be quantified, but is no quantifier itself
      continue;
    }
    if (c === '+' && prevQuantifier) {
      const q = out[out.length - 1];
      if (q !== '?' && q !== '+') throw new Error(`the possessive quantifier ${q}+ is not supported`);
      i += 1; // ?+ and ++ -> ? and + (see above)
      prevQuantifier = false;
      continue;
    }
    if (c === '{') {
      const end = pattern.indexOf('}', i);
      out += pattern.slice(i, end + 1);
      i = end + 1;
      prevQuantifier = true;
      continue;
    }
    if (folding() && /[a-zA-Z]/.test(c)) out += `[${letterSet(c)}]`;
    else out += c;
    prevQuantifier = c === '?' || c === '*' || c === '+';
    i += 1;
  }
  return out;
}

/** The tokenizer's pattern as a RegExp: native `(?i:...)` groups where the browser has them. */
export function compilePattern(pattern) {
  try {
    return new RegExp(translatePattern(pattern), 'gu');
  } catch (e) {
    if (!(e instanceof SyntaxError) || !pattern.includes('(?i:')) throw e;
    return new RegExp(translatePattern(pattern, { foldCase: true }), 'gu');
  }
}

/** A byte string (each char code 0-255) as the key of the rank table. */
function key(bytes, start, end) {
  let s = '';
  for (let k = start; k < end; k += 4096) {
    s += String.fromCharCode(...bytes.subarray(k, Math.min(end, k + 4096)));
  }
  return s;
}

export class Tokenizer {
  /** `json`: the tokenizer file, parsed. */
  constructor(json) {
    if (typeof json?.pattern !== 'string' || typeof json?.mergeable_ranks !== 'object') {
      throw new Error('the tokenizer file lacks "pattern" or "mergeable_ranks"');
    }
    this.regex = compilePattern(json.pattern);
    this.ranks = new Map();
    for (const [b64, rank] of Object.entries(json.mergeable_ranks)) {
      this.ranks.set(atob(b64), rank); // atob gives one char per byte: the key form
    }
    this.utf8 = new TextEncoder();
  }

  /**
   * The ids of one piece's bytes: start from single bytes and merge the adjacent pair of
   * lowest rank (the leftmost of equal ones) until no adjacent pair is a token. Returns
   * [{id, start, end}] with byte offsets into `bytes`.
   */
  mergePiece(bytes) {
    const whole = this.ranks.get(key(bytes, 0, bytes.length));
    if (whole !== undefined) return [{ id: whole, start: 0, end: bytes.length }];
    // parts[k]: the byte offset where part k starts; the last entry is the end.
    const parts = Array.from({ length: bytes.length + 1 }, (_, k) => k);
    const pairRank = (k) =>
      k + 2 < parts.length ? this.ranks.get(key(bytes, parts[k], parts[k + 2])) ?? Infinity : Infinity;
    const ranks = parts.slice(0, -1).map((_, k) => pairRank(k));
    for (;;) {
      let best = -1;
      for (let k = 0; k < ranks.length; k++) {
        if (ranks[k] !== Infinity && (best < 0 || ranks[k] < ranks[best])) best = k;
      }
      if (best < 0) break;
      parts.splice(best + 1, 1);
      ranks.splice(best + 1, 1);
      ranks[best] = pairRank(best);
      if (best > 0) ranks[best - 1] = pairRank(best - 1);
    }
    return parts.slice(0, -1).map((start, k) => {
      const id = this.ranks.get(key(bytes, start, parts[k + 1]));
      if (id === undefined) throw new Error(`byte ${bytes[start]} is not in the vocabulary`);
      return { id, start, end: parts[k + 1] };
    });
  }

  /**
   * Encode `text` as tiktoken's encode_ordinary does (special tokens are plain text here),
   * stopping after `limit` tokens. Returns {tokens: [{id, start, end}] with spans in UTF-16
   * units of `text`, complete: false when the limit cut the text short}. A character whose
   * UTF-8 bytes fall into several tokens belongs to the token holding its first byte; the
   * other tokens get an empty span at its end.
   */
  encode(text, limit = Infinity) {
    const tokens = [];
    this.regex.lastIndex = 0;
    for (const match of text.matchAll(this.regex)) {
      const piece = match[0];
      const bytes = this.utf8.encode(piece);
      // The UTF-16 offset in `text` of every byte offset of the piece at which a character starts.
      const at = new Map();
      let b = 0;
      for (let u = 0; u < piece.length; ) {
        const cp = piece.codePointAt(u);
        at.set(b, match.index + u);
        b += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
        u += cp > 0xffff ? 2 : 1;
      }
      at.set(bytes.length, match.index + piece.length);
      const offset = (byte) => {
        while (!at.has(byte)) byte += 1; // inside a character: its end
        return at.get(byte);
      };
      for (const t of this.mergePiece(bytes)) {
        if (tokens.length >= limit) return { tokens, complete: false };
        tokens.push({ id: t.id, start: offset(t.start), end: offset(t.end) });
      }
    }
    return { tokens, complete: true };
  }
}
