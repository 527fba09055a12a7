// Sampling from a dcgan ONNX generator with onnxruntime-web (or onnxruntime-node): the page's
// model logic, without the page. The caller passes its `ort` module in, so the same file runs over
// the WASM, WebGPU or Node backends.
//
//   const gen = await Generator.load(ort, bytes, { executionProviders: ['wasm'] });
//   const { dims, data } = await gen.sample(42n, 16);   // image i = `dcgan sample --seed 42`'s image i
//   const image = gridImage({ dims, data }, 4);          // RGBA, ready for ctx.putImageData
//
// The contract (dcgan_export/contract.py): input `z` float32 [N, latent] (and, for a
// class-conditional model, `labels` int64 [N]); outputs `images` float32 [N, H, W, C] in [-1, 1]
// and `pixels` uint8 [N, H, W] or [N, H, W, 3]. Metadata (`latent_dim`, `class_names`, ...) is
// read from the model file itself, since onnxruntime-web does not expose it.

import { imageNoise } from './noise.js';

export const LATENT_INPUT = 'z';
export const LABELS_INPUT = 'labels';
export const IMAGES_OUTPUT = 'images';
export const PIXELS_OUTPUT = 'pixels';
export const GRID_PADDING = 2; // as dcgan_export.images.make_grid

// --- metadata_props of an ONNX ModelProto (protobuf: field 14, entries key = 1, value = 2) ----------

function readVarint(bytes, pos) {
  let value = 0;
  let scale = 1;
  for (;;) {
    if (pos >= bytes.length) throw new Error('truncated varint');
    const b = bytes[pos++];
    value += (b & 0x7f) * scale; // exact for lengths below 2^53, all a browser can hold
    if (b < 0x80) return [value, pos];
    scale *= 128;
    if (scale > 2 ** 63) throw new Error('varint too long');
  }
}

// Fields of one protobuf message: [{ field, wire, start, end }] for length-delimited ones (wire 2).
function* messageFields(bytes, start, end) {
  let pos = start;
  while (pos < end) {
    let key;
    [key, pos] = readVarint(bytes, pos);
    const field = Math.floor(key / 8);
    const wire = key % 8;
    if (wire === 0) {
      [, pos] = readVarint(bytes, pos);
    } else if (wire === 1) {
      pos += 8;
    } else if (wire === 5) {
      pos += 4;
    } else if (wire === 2) {
      let length;
      [length, pos] = readVarint(bytes, pos);
      if (pos + length > end) throw new Error('truncated field');
      yield { field, start: pos, end: pos + length };
      pos += length;
    } else {
      throw new Error(`unsupported wire type ${wire}`);
    }
    if (pos > end) throw new Error('truncated message');
  }
}

/** The model's metadata_props as an object, or throws if the bytes are not a protobuf message. */
export function readMetadata(bytes) {
  const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const text = new TextDecoder();
  const metadata = {};
  for (const entry of messageFields(view, 0, view.length)) {
    if (entry.field !== 14) continue;
    let key = '';
    let value = '';
    for (const part of messageFields(view, entry.start, entry.end)) {
      if (part.field === 1) key = text.decode(view.subarray(part.start, part.end));
      if (part.field === 2) value = text.decode(view.subarray(part.start, part.end));
    }
    metadata[key] = value;
  }
  return metadata;
}

// --- pixels ----------------------------------------------------------------------------------------

/** round((x + 1) * 127.5) in float32, halves to even, clipped: numpy's rint and ONNX Round agree. */
export function toPixel(x) {
  const v = Math.fround(Math.fround(x + 1) * 127.5);
  let r = Math.round(v);
  if (r - v === 0.5 && r % 2 !== 0) r -= 1;
  return Math.min(255, Math.max(0, r));
}

/** Spherical interpolation between rows of two [n, latent] noise arrays (interpolation.py's
 * slerp): the ends are returned exactly, so t = 0 and t = 1 give the seeds' own images. */
export function slerp(a, b, t, latentDim) {
  if (t <= 0) return a.slice();
  if (t >= 1) return b.slice();
  const out = new Float32Array(a.length);
  for (let row = 0; row < a.length; row += latentDim) {
    let dot = 0;
    let na = 0;
    let nb = 0;
    for (let j = row; j < row + latentDim; j++) {
      dot += a[j] * b[j];
      na += a[j] * a[j];
      nb += b[j] * b[j];
    }
    const cos = Math.min(1, Math.max(-1, dot / Math.max(Math.sqrt(na * nb), 1e-12)));
    const omega = Math.acos(cos);
    const sin = Math.sin(omega);
    const [wa, wb] = sin < 1e-6 ? [1 - t, t] : [Math.sin((1 - t) * omega) / sin, Math.sin(t * omega) / sin];
    for (let j = row; j < row + latentDim; j++) out[j] = wa * a[j] + wb * b[j];
  }
  return out;
}

/** Images [n, H, W(, 3)] tiled as make_grid does (ceil(sqrt(n)) columns, 2 black pixels between
 * and around), each pixel a scale x scale square, as RGBA { width, height, data }. */
export function gridImage({ dims, data }, scale = 1, padding = GRID_PADDING) {
  const [n, h, w] = dims;
  const channels = dims.length === 4 ? dims[3] : 1;
  const cols = Math.min(Math.ceil(Math.sqrt(n)), n);
  const rows = Math.ceil(n / cols);
  const width = (cols * (w + padding) + padding) * scale;
  const height = (rows * (h + padding) + padding) * scale;
  const rgba = new Uint8ClampedArray(width * height * 4);
  for (let i = 3; i < rgba.length; i += 4) rgba[i] = 255; // opaque black background
  for (let i = 0; i < n; i++) {
    const top = (padding + Math.floor(i / cols) * (h + padding)) * scale;
    const left = (padding + (i % cols) * (w + padding)) * scale;
    for (let y = 0; y < h * scale; y++) {
      for (let x = 0; x < w * scale; x++) {
        const src = ((i * h + Math.floor(y / scale)) * w + Math.floor(x / scale)) * channels;
        const dst = ((top + y) * width + left + x) * 4;
        rgba[dst] = data[src];
        rgba[dst + 1] = data[src + (channels === 3 ? 1 : 0)];
        rgba[dst + 2] = data[src + (channels === 3 ? 2 : 0)];
      }
    }
  }
  return { width, height, data: rgba };
}

// --- the generator ---------------------------------------------------------------------------------

const firstLine = (err) => String((err && err.message) || err).split('\n')[0];

export class Generator {
  /** Load a generator from its bytes (ArrayBuffer or Uint8Array); throws a one-line Error if
   * they are not a generator that keeps the contract. */
  static async load(ort, bytes, sessionOptions = {}) {
    const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    let metadata;
    try {
      metadata = readMetadata(view);
    } catch (err) {
      throw new Error(`not an ONNX model (${firstLine(err)})`);
    }
    let session;
    try {
      session = await ort.InferenceSession.create(view, sessionOptions);
    } catch (err) {
      throw new Error(`onnxruntime could not load the model: ${firstLine(err)}`);
    }
    return new Generator(ort, session, metadata);
  }

  constructor(ort, session, metadata) {
    this.ort = ort;
    this.session = session;
    this.metadata = metadata;
    if (!session.inputNames.includes(LATENT_INPUT) || !session.outputNames.includes(IMAGES_OUTPUT)) {
      throw new Error(`not a dcgan generator: inputs ${session.inputNames.join(', ')}, outputs ` +
        `${session.outputNames.join(', ')} (expected input ${LATENT_INPUT}, output ${IMAGES_OUTPUT})`);
    }
    const shapeOf = (list, name) => {
      const meta = (list || []).find((m) => m.name === name);
      return meta && meta.shape ? meta.shape.map(Number) : null;
    };
    const zShape = shapeOf(session.inputMetadata, LATENT_INPUT);
    this.latentDim = Number(metadata.latent_dim) || (zShape ? zShape[1] : NaN);
    if (!Number.isInteger(this.latentDim) || this.latentDim < 1) throw new Error('cannot tell the noise size');
    this.hasLabels = session.inputNames.includes(LABELS_INPUT);
    this.classNames = null;
    if (metadata.class_names) {
      try {
        this.classNames = JSON.parse(metadata.class_names);
      } catch {
        this.classNames = null; // a bad list only loses the names: the picker shows numbers
      }
    }
    this.output = session.outputNames.includes(PIXELS_OUTPUT) ? PIXELS_OUTPUT : IMAGES_OUTPUT;
  }

  /** Pixels for noise z (Float32Array of n * latent) and, for a conditional model, one class
   * index per image: { dims: [n, H, W] or [n, H, W, 3], data: Uint8Array }. */
  async pixels(z, labels = null) {
    const n = z.length / this.latentDim;
    const feeds = { [LATENT_INPUT]: new this.ort.Tensor('float32', z, [n, this.latentDim]) };
    if (this.hasLabels) {
      if (!labels || labels.length !== n) throw new Error('this model is class-conditional: pick a class');
      feeds[LABELS_INPUT] = new this.ort.Tensor('int64', BigInt64Array.from(labels, BigInt), [n]);
    }
    let result;
    try {
      result = await this.session.run(feeds, [this.output]);
    } catch (err) {
      throw new Error(`the model failed to run: ${firstLine(err)}`);
    }
    const tensor = result[this.output];
    const dims = tensor.dims.map(Number);
    if (this.output === PIXELS_OUTPUT) return { dims, data: tensor.data };
    const [count, h, w, c] = dims; // images [N, H, W, C]: pixels drop C when it is 1
    return { dims: c === 1 ? [count, h, w] : dims, data: Uint8Array.from(tensor.data, toPixel) };
  }

  /** The noise of images start .. start + n - 1 of a seed (docs/noise.md). */
  noise(seed, n, { truncation = null, start = 0 } = {}) {
    return imageNoise(seed, start, n, this.latentDim, truncation);
  }

  /** The class of each of n images (null for an unconditional model): `label` (an index or a
   * name) for all of them, or, when null, image start + i is class (start + i) % K, as in Python's
   * Sampler.sample. */
  labelsFor(n, label, start = 0) {
    if (!this.hasLabels) {
      if (label !== null && label !== undefined) throw new Error('this model is not class-conditional: it takes no class');
      return null;
    }
    if (label === null || label === undefined) {
      if (!this.classNames) throw new Error('this model is class-conditional: pick a class');
      return Array.from({ length: n }, (_, i) => (start + i) % this.classNames.length);
    }
    const k = this.classIndex(label);
    return Array.from({ length: n }, () => k);
  }

  /** One class as its index: a name from class_names, or an index (a number, or decimal text that
   * is no name) below their count; throws a one-line Error, as dcgan_export/classes.py does. */
  classIndex(label) {
    const names = this.classNames || [];
    if (typeof label === 'string' && names.includes(label)) return names.indexOf(label);
    const k = typeof label === 'string' && /^[0-9]+$/.test(label) ? Number(label) : label;
    if (!Number.isInteger(k) || k < 0 || (this.classNames && k >= names.length)) {
      const shown = names.slice(0, 8).map((name) => `'${name.slice(0, 30)}'`).join(', ');
      const more = names.length > 8 ? `, ... (${names.length} in all)` : '';
      const what = Number.isInteger(k) && k >= 0 ? `class ${k} is out of range`
        : `unknown class ${JSON.stringify(String(label).slice(0, 40))}`;
      throw new Error(`${what}: this model's classes are ${names.length ? `0-${names.length - 1}: ${shown}${more}` : 'unnamed'}`);
    }
    return k;
  }

  /** Images 0 .. n - 1 of a seed: the ones `dcgan sample --seed` makes. */
  async sample(seed, n, { truncation = null, label = null } = {}) {
    return this.pixels(this.noise(seed, n, { truncation }), this.labelsFor(n, label));
  }

  /** Image j moved a fraction t along the great circle from image j of seedA to image j of seedB. */
  async walk(seedA, seedB, t, n, { truncation = null, label = null } = {}) {
    const z = slerp(this.noise(seedA, n, { truncation }), this.noise(seedB, n, { truncation }), t, this.latentDim);
    return this.pixels(z, this.labelsFor(n, label));
  }
}
