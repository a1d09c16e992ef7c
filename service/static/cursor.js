// The per-room stream id of a log on a multi-room stream, for the viewer's permalinks.
//
// The multi-room stream's `id:` is a cursor that the contract calls opaque: RoomStream only
// sends it back. The viewer, served by the same gateway, also reads the log's own room's
// position out of it to show each row's stream id ("1700000000000-0") and link to it. It reads
// the gateway's layout (service/cursor.py), which the viewer tests pin (rows' ids against the
// ids the gateway gave at publish time): "r1.", the epoch in 8 base64url digits (ms), then per
// room 15 digits: 6 of digest (BLAKE2b-40 of the room id >> 4), 9 of value (offset << 18 | seq;
// offset 0 for "0-0", else zigzag(ms - epoch) + 1). A clamped position (a seq of 2^18 - 1, or
// an offset at the edge of its 36 bits) or any other text gives null: that row then has no
// stream id of its own (no permalink), and everything else works as before.

const PREFIX = "r1.";
const HEAD = PREFIX.length + 8;
const SLOT = 15;
const SEQ_BITS = 18n;
const SEQ_MAX = (1n << SEQ_BITS) - 1n;
const OFFSET_MAX = (1n << 36n) - 1n;
const REACH = (1n << 35n) - 1n;
const MASK = (1n << 64n) - 1n;
const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

function number(text) {
  let value = 0n;
  for (const c of text) {
    const digit = ALPHABET.indexOf(c);
    if (digit < 0) throw new Error("not base64url");
    value = (value << 6n) | BigInt(digit);
  }
  return value;
}

function chars(value, width) {
  let out = "";
  for (let i = width - 1; i >= 0; i--) out += ALPHABET[Number((value >> BigInt(6 * i)) & 63n)];
  return out;
}

/** The positions a cursor holds, by room digest: Map digest → "ms-seq" (null when clamped);
 *  null when `text` is not a cursor of this layout. */
export function cursorPositions(text) {
  if (typeof text !== "string" || !text.startsWith(PREFIX)) return null;
  if (text.length < HEAD || (text.length - HEAD) % SLOT) return null;
  try {
    const epoch = number(text.slice(PREFIX.length, HEAD));
    const positions = new Map();
    for (let at = HEAD; at < text.length; at += SLOT) {
      const digest = text.slice(at, at + 6);
      number(digest);
      const value = number(text.slice(at + 6, at + SLOT));
      const offset = value >> SEQ_BITS;
      const seq = value & SEQ_MAX;
      let id = null;
      if (offset === 0n) {
        id = seq === 0n ? "0-0" : null;
      } else {
        const zigzag = offset - 1n;
        const delta = zigzag % 2n === 0n ? zigzag / 2n : -(zigzag + 1n) / 2n;
        const clamped = seq === SEQ_MAX || offset >= OFFSET_MAX || delta >= REACH - 1n || delta <= -REACH;
        if (!clamped) id = `${epoch + delta}-${seq}`;
      }
      positions.set(digest, id);
    }
    return positions;
  } catch {
    return null;
  }
}

const digests = new Map();

/** The cursor's digits for `room`: BLAKE2b-40 of its UTF-8 bytes, shifted right by 4. */
export function roomDigest(room) {
  let digest = digests.get(room);
  if (digest === undefined) {
    const bytes = blake2b(new TextEncoder().encode(room), 5);
    let value = 0n;
    for (const b of bytes) value = (value << 8n) | BigInt(b);
    digest = chars(value >> 4n, 6);
    if (digests.size > 4096) digests.clear();
    digests.set(room, digest);
  }
  return digest;
}

/** This room's position in the cursor `text` (its own stream id), or null. */
export function roomPosition(text, room) {
  const positions = cursorPositions(text);
  return positions ? (positions.get(roomDigest(room)) ?? null) : null;
}

// BLAKE2b (RFC 7693), unkeyed, for short inputs: what Python's hashlib.blake2b(digest_size=n)
// computes. BigInt is slow but this runs once per room.
const IV = [
  0x6a09e667f3bcc908n, 0xbb67ae8584caa73bn, 0x3c6ef372fe94f82bn, 0xa54ff53a5f1d36f1n,
  0x510e527fade682d1n, 0x9b05688c2b3e6c1fn, 0x1f83d9abfb41bd6bn, 0x5be0cd19137e2179n,
];
const SIGMA = [
  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
  [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
  [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
  [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
  [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
  [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
  [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
  [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
  [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
  [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
];

const rotr = (x, n) => ((x >> n) | (x << (64n - n))) & MASK;

function compress(h, block, t, last) {
  const m = [];
  for (let i = 0; i < 16; i++) {
    let w = 0n;
    for (let j = 7; j >= 0; j--) w = (w << 8n) | BigInt(block[i * 8 + j]);
    m.push(w);
  }
  const v = [...h, ...IV];
  v[12] ^= t & MASK;
  v[13] ^= t >> 64n;
  if (last) v[14] ^= MASK;
  const g = (a, b, c, d, x, y) => {
    v[a] = (v[a] + v[b] + x) & MASK;
    v[d] = rotr(v[d] ^ v[a], 32n);
    v[c] = (v[c] + v[d]) & MASK;
    v[b] = rotr(v[b] ^ v[c], 24n);
    v[a] = (v[a] + v[b] + y) & MASK;
    v[d] = rotr(v[d] ^ v[a], 16n);
    v[c] = (v[c] + v[d]) & MASK;
    v[b] = rotr(v[b] ^ v[c], 63n);
  };
  for (let r = 0; r < 12; r++) {
    const s = SIGMA[r % 10];
    g(0, 4, 8, 12, m[s[0]], m[s[1]]);
    g(1, 5, 9, 13, m[s[2]], m[s[3]]);
    g(2, 6, 10, 14, m[s[4]], m[s[5]]);
    g(3, 7, 11, 15, m[s[6]], m[s[7]]);
    g(0, 5, 10, 15, m[s[8]], m[s[9]]);
    g(1, 6, 11, 12, m[s[10]], m[s[11]]);
    g(2, 7, 8, 13, m[s[12]], m[s[13]]);
    g(3, 4, 9, 14, m[s[14]], m[s[15]]);
  }
  for (let i = 0; i < 8; i++) h[i] ^= v[i] ^ v[i + 8];
}

export function blake2b(input, outLen) {
  const h = [...IV];
  h[0] ^= 0x01010000n ^ BigInt(outLen);
  let t = 0n;
  let at = 0;
  while (input.length - at > 128) {
    t += 128n;
    compress(h, input.subarray(at, at + 128), t, false);
    at += 128;
  }
  const block = new Uint8Array(128);
  block.set(input.subarray(at));
  t += BigInt(input.length - at);
  compress(h, block, t, true);
  const out = new Uint8Array(outLen);
  for (let i = 0; i < outLen; i++) out[i] = Number((h[i >> 3] >> BigInt(8 * (i & 7))) & 0xffn);
  return out;
}
