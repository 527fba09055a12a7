// Seed-stable noise, bit for bit the same as dcgan's Python Sampler (dcgan_export/noise.py;
// docs/noise.md has the algorithm). One ES module for Node and the browser, no dependencies.
//
//   import { imageNoise } from './noise.js';
//   const z = imageNoise(42n, 0, 16, 100);   // Float32Array [16 * 100]: images 0..15 of seed 42
//
// 64-bit words are kept as two uint32 halves (hi, lo): BigInt would be 30x slower.

export const MAX_SEED = (1n << 63n) - 1n;
export const MIN_TRUNCATION = 0.01;

const LN2 = 0.6931471805599453;
const SQRT_HALF = 0.7071067811865476;
const HALF_PI = 1.5707963267948966;
const TWO_POW_M53 = 2 ** -53;
const TWO_POW_32 = 4294967296;
const LOG_TERMS = 10;
const TRIG_TERMS = 11;
const GAMMA_HI = 0x9e3779b9, GAMMA_LO = 0x7f4a7c15;

const INV_ODD = Array.from({ length: LOG_TERMS }, (_, k) => 1 / (2 * k + 1));
function taylor(step) {
  const out = [1];
  for (let n = 1; n <= TRIG_TERMS; n++) out.push(out[n - 1] / step(n));
  return out;
}
const SIN = taylor((n) => -((2 * n) * (2 * n + 1)));
const COS = taylor((n) => -((2 * n - 1) * (2 * n)));
const POW2_NEG = [1]; // 2^-e, exact
for (let e = 1; e <= 64; e++) POW2_NEG.push(POW2_NEG[e - 1] / 2);

// Results of the 64-bit helpers (no allocation in the hot loop).
let H = 0, L = 0;

function mul64(ahi, alo, bhi, blo) { // (a * b) mod 2^64
  const a0 = alo & 0xffff, a1 = alo >>> 16, b0 = blo & 0xffff, b1 = blo >>> 16;
  const low = a0 * b0;
  const t = a1 * b0 + a0 * b1 + Math.floor(low / 65536);
  const carry = a1 * b1 + Math.floor(t / 65536); // high half of alo * blo
  L = Math.imul(alo, blo) >>> 0;
  H = (carry + Math.imul(alo, bhi) + Math.imul(ahi, blo)) >>> 0;
}

function add64(ahi, alo, bhi, blo) {
  const lo = alo + blo;
  L = lo >>> 0;
  H = (ahi + bhi + (lo > 0xffffffff ? 1 : 0)) >>> 0;
}

function mix64(hi, lo) { // SplitMix64's output function
  let l = (lo ^ ((lo >>> 30) | (hi << 2))) >>> 0, h = (hi ^ (hi >>> 30)) >>> 0;
  mul64(h, l, 0xbf58476d, 0x1ce4e5b9);
  l = (L ^ ((L >>> 27) | (H << 5))) >>> 0; h = (H ^ (H >>> 27)) >>> 0;
  mul64(h, l, 0x94d049bb, 0x133111eb);
  l = (L ^ ((L >>> 31) | (H << 1))) >>> 0; h = (H ^ (H >>> 31)) >>> 0;
  H = h; L = l;
}

// word c of a stream: mix64(key + GAMMA * (c + 1)); c + 1 < 2^53
function word(khi, klo, c) {
  const n = c + 1;
  mul64(GAMMA_HI, GAMMA_LO, Math.floor(n / TWO_POW_32) >>> 0, n >>> 0);
  add64(khi, klo, H, L);
  mix64(H, L);
}

function logUnit(hi, lo) { // ln(((w >> 11) + 1) 2^-53)
  const x = hi * 2097152 + (lo >>> 11) + 1; // integer in [1, 2^53]
  let e = x >= TWO_POW_32 ? 64 - Math.clz32(Math.floor(x / TWO_POW_32)) : 32 - Math.clz32(x);
  let m = x * POW2_NEG[e]; // frexp: [0.5, 1)
  if (m < SQRT_HALF) { m = m * 2; e -= 1; }
  const t = (m - 1) / (m + 1);
  const t2 = t * t;
  let p = INV_ODD[LOG_TERMS - 1];
  for (let k = LOG_TERMS - 2; k >= 0; k--) p = p * t2 + INV_ODD[k];
  return (2 * t) * p + (e - 53) * LN2;
}

let COS_OUT = 0, SIN_OUT = 0;
function cosSin(hi, lo) { // angle (q + f) pi/2: q = top 2 bits, f = next 53 bits / 2^53
  const q = hi >>> 30;
  const theta = (((hi & 0x3fffffff) * 8388608 + (lo >>> 9)) * TWO_POW_M53) * HALF_PI;
  const t2 = theta * theta;
  let s = SIN[TRIG_TERMS], c = COS[TRIG_TERMS];
  for (let n = TRIG_TERMS - 1; n >= 0; n--) { s = s * t2 + SIN[n]; c = c * t2 + COS[n]; }
  s = s * theta;
  let cos = q & 1 ? s : c, sin = q & 1 ? c : s;
  if (q === 1 || q === 2) cos = -cos;
  if (q >= 2) sin = -sin;
  COS_OUT = cos; SIN_OUT = sin;
}

let Z0 = 0, Z1 = 0;
function normalPair(khi, klo, pair) { // Box-Muller on words 2 pair and 2 pair + 1
  word(khi, klo, 2 * pair);
  const r = Math.sqrt(-2 * logUnit(H, L));
  word(khi, klo, 2 * pair + 1);
  cosSin(H, L);
  Z0 = Math.fround(r * COS_OUT); Z1 = Math.fround(r * SIN_OUT);
}

function normalAt(khi, klo, index) {
  normalPair(khi, klo, Math.floor(index / 2));
  return index % 2 === 0 ? Z0 : Z1;
}

/** A seed as a BigInt in [0, 2^63 - 1], from a BigInt, a safe integer or a decimal string; else a RangeError. */
export function parseSeed(seed) {
  let s;
  if (typeof seed === 'bigint') s = seed;
  else if (typeof seed === 'number' && Number.isSafeInteger(seed)) s = BigInt(seed);
  else if (typeof seed === 'string' && /^\s*\d{1,19}\s*$/.test(seed)) s = BigInt(seed.trim());
  else throw new RangeError(`seed must be an integer from 0 to ${MAX_SEED}, got ${String(seed).slice(0, 40)}`);
  if (s < 0n || s > MAX_SEED) throw new RangeError(`seed must be an integer from 0 to ${MAX_SEED}, got ${s}`);
  return s;
}

/**
 * Noise of images start .. start+count-1 of seed: Float32Array [count * latentDim], row-major,
 * equal bit for bit to Python's Sampler.noise(count, seed, start, truncation).
 * truncation psi (optional): components with |z| > psi take the stream's next unused normals, round after round.
 */
export function imageNoise(seed, start, count, latentDim, truncation = null) {
  const s = parseSeed(seed);
  if (!Number.isSafeInteger(start) || start < 0 || !Number.isSafeInteger(count) || count < 0) {
    throw new RangeError('start and count must be non-negative integers');
  }
  if (!Number.isSafeInteger(latentDim) || latentDim < 1) throw new RangeError('latentDim must be a positive integer');
  if (truncation !== null && truncation !== undefined
      && !(Number.isFinite(truncation) && truncation >= MIN_TRUNCATION)) {
    throw new RangeError(`truncation must be a finite number >= ${MIN_TRUNCATION}, got ${truncation}`);
  }
  const psi = truncation ?? null;
  const out = new Float32Array(count * latentDim);
  mix64(Number(s >> 32n), Number(s & 0xffffffffn));
  const baseHi = H, baseLo = L;
  for (let j = 0; j < count; j++) {
    const i = start + j + 1;
    mul64(GAMMA_HI, GAMMA_LO, Math.floor(i / TWO_POW_32) >>> 0, i >>> 0);
    add64(baseHi, baseLo, H, L);
    mix64(H, L);
    const khi = H, klo = L;
    const row = out.subarray(j * latentDim, (j + 1) * latentDim);
    for (let p = 0; 2 * p < latentDim; p++) {
      normalPair(khi, klo, p);
      row[2 * p] = Z0;
      if (2 * p + 1 < latentDim) row[2 * p + 1] = Z1;
    }
    if (psi !== null) {
      let used = latentDim;
      for (;;) {
        const outside = [];
        for (let k = 0; k < latentDim; k++) if (Math.abs(row[k]) > psi) outside.push(k);
        if (outside.length === 0) break;
        for (const k of outside) row[k] = normalAt(khi, klo, used++);
      }
    }
  }
  return out;
}
