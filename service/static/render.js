// What a log row shows, built with DOM APIs only: log text goes in through text nodes and
// attributes, never innerHTML, so a log cannot inject markup, and a link is made only from an
// http(s) URL (a `javascript:` or `data:` URL stays text).

export const COLLAPSE_CHARS = 600;
export const COLLAPSE_LINES = 8;
const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;
const TRAILING = /[.,;:!?)\]}]+$/;

/** Split `text` into plain and link pieces: [{text}, {text, href}]. */
export function linkPieces(text) {
  const pieces = [];
  let at = 0;
  for (const m of text.matchAll(URL_RE)) {
    let raw = m[0];
    // Punctuation that ends a sentence is not part of the link ("see https://x.test/a.").
    const trail = TRAILING.exec(raw);
    if (trail && !(trail[0].startsWith(")") && raw.includes("("))) {
      raw = raw.slice(0, raw.length - trail[0].length);
    }
    const href = safeHref(raw);
    if (!href) continue;
    if (m.index > at) pieces.push({ text: text.slice(at, m.index) });
    pieces.push({ text: raw, href });
    at = m.index + raw.length;
  }
  if (at < text.length) pieces.push({ text: text.slice(at) });
  return pieces;
}

/** `raw` as an absolute http(s) URL, else null. */
export function safeHref(raw) {
  try {
    const url = new URL(raw);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

/** Text nodes for `text`, with each (case-insensitive) match of `query` in a <mark>. */
export function highlighted(text, query) {
  const out = document.createDocumentFragment();
  if (!query) {
    out.append(text);
    return out;
  }
  const lower = text.toLowerCase();
  let at = 0;
  for (let i = lower.indexOf(query); i !== -1; i = lower.indexOf(query, i + query.length)) {
    if (i > at) out.append(text.slice(at, i));
    const mark = document.createElement("mark");
    mark.textContent = text.slice(i, i + query.length);
    out.append(mark);
    at = i + query.length;
  }
  if (at < text.length) out.append(text.slice(at));
  return out;
}

/** Fill `el` with `text`: links clickable (new tab, no opener, no referrer), matches marked. */
export function fillText(el, text, query = "", { links = true } = {}) {
  el.replaceChildren();
  for (const piece of links ? linkPieces(text) : [{ text }]) {
    if (!piece.href) {
      el.append(highlighted(piece.text, query));
      continue;
    }
    const a = document.createElement("a");
    a.href = piece.href;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    a.referrerPolicy = "no-referrer";
    a.append(highlighted(piece.text, query));
    el.append(a);
  }
}

/** Where a long message is cut when collapsed, or -1 when it is short enough. */
export function collapseAt(text) {
  let cut = text.length > COLLAPSE_CHARS ? COLLAPSE_CHARS : -1;
  let newlines = 0;
  for (let i = 0; i < text.length && (cut === -1 || i < cut); i++) {
    if (text.charCodeAt(i) === 10 && ++newlines === COLLAPSE_LINES) {
      cut = i;
      break;
    }
  }
  return cut;
}

function pad(n, width = 2) {
  return String(n).padStart(width, "0");
}

/** "YYYY-MM-DD HH:MM:SS.mmm" of `ts` in UTC or local time; the raw value when not a date. */
export function formatTime(ts, utc) {
  const d = new Date(ts);
  if (typeof ts !== "string" || Number.isNaN(d.getTime())) return String(ts ?? "");
  const [y, mo, day, h, mi, s, ms] = utc
    ? [d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds(), d.getUTCMilliseconds()]
    : [d.getFullYear(), d.getMonth() + 1, d.getDate(), d.getHours(), d.getMinutes(), d.getSeconds(), d.getMilliseconds()];
  return `${y}-${pad(mo)}-${pad(day)} ${pad(h)}:${pad(mi)}:${pad(s)}.${pad(ms, 3)}`;
}

/** The local zone's offset as "+02:00" (for the UTC/local switch's label). */
export function localOffset(date = new Date()) {
  const minutes = -date.getTimezoneOffset();
  const sign = minutes >= 0 ? "+" : "-";
  const abs = Math.abs(minutes);
  return `${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

// Room colours: a fixed palette (classes rc-0 … rc-9 in viewer.css, the CSP allows no inline
// style), chosen by a hash of the room id so a room keeps its colour across reloads, moved to
// the next free one when two followed rooms would share it.
export const PALETTE_SIZE = 10;

export function roomHash(room) {
  let h = 2166136261;
  for (let i = 0; i < room.length; i++) {
    h ^= room.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return h >>> 0;
}

export function assignColours(rooms) {
  const taken = new Set();
  const colours = new Map();
  for (const room of rooms) {
    let c = roomHash(room) % PALETTE_SIZE;
    for (let i = 0; i < PALETTE_SIZE && taken.has(c); i++) c = (c + 1) % PALETTE_SIZE;
    taken.add(c);
    colours.set(room, c);
  }
  return colours;
}
