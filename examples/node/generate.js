#!/usr/bin/env node
// Generate digits from the dcgan ONNX generator in Node.js with onnxruntime-node.
//
//   npm ci --ignore-scripts            (once, in examples/node)
//   node generate.js MODEL.onnx --seed S [--n N] [--truncation PSI] [--class K] OUT.(npy|json)
//   node generate.js MODEL.onnx NOISE.(npy|json) [--class K] OUT.(npy|json)
//
// --seed: image i of seed S is the image Python's `dcgan sample --seed S` makes (the noise comes
// from ../web/noise.js, bit for bit Python's; N defaults to 25). Loading and running the model is
// ../web/sampler.js, the same module the web page uses.
// NOISE: your own float32/float64 [n, latent] as .npy, or JSON {"z": [[...], ...]} (or a bare [[...]]).
// OUT: uint8 pixels [n, H, W] (grey) or [n, H, W, 3] (RGB) as .npy, or JSON {"shape", "dtype",
// "pixels"} like the service. The generator's contract: input `z` [N, latent] float32; outputs
// `images` float32 [N, H, W, C] in [-1, 1] and `pixels` uint8 = round((images + 1) * 127.5),
// [N, H, W] for C = 1, [N, H, W, 3] for C = 3 (the shipped digit model: 28 x 28 x 1).
// --class K: a class-conditional model's class (an index, or a name from its class_names) for
// every image; without it image i is class i % K, as in `dcgan sample`.
'use strict';

const fs = require('fs');
const path = require('path');

class UsageError extends Error {}

// --- .npy (format 1.0/2.0/3.0, little-endian, C order) -----------------------------------------

function readNpy(buf) {
  if (buf.length < 10 || buf.readUInt8(0) !== 0x93 || buf.toString('latin1', 1, 6) !== 'NUMPY') {
    throw new UsageError('not a .npy file');
  }
  const major = buf.readUInt8(6);
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.toString(major >= 3 ? 'utf8' : 'latin1', start, start + headerLen);
  const descr = /'descr':\s*'([^']*)'/.exec(header);
  const fortran = /'fortran_order':\s*(True|False)/.exec(header);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!descr || !fortran || !shape) throw new UsageError(`unreadable .npy header: ${header.trim()}`);
  if (fortran[1] === 'True') throw new UsageError('Fortran-ordered .npy arrays are not supported');
  const dims = shape[1].split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  const count = dims.reduce((a, b) => a * b, 1);
  const readers = { '<f4': [4, (o) => buf.readFloatLE(o)], '<f8': [8, (o) => buf.readDoubleLE(o)] };
  if (!(descr[1] in readers)) throw new UsageError(`noise must be float32 or float64, got dtype ${descr[1]}`);
  const [size, read] = readers[descr[1]];
  const offset = start + headerLen;
  if (buf.length !== offset + count * size) throw new UsageError('.npy data size does not match its shape');
  const data = new Float32Array(count); // float64 rounds to the nearest float32, as numpy's astype
  for (let i = 0; i < count; i++) data[i] = read(offset + i * size);
  return { dims, data };
}

function npyBytes(data, dims) {
  const dict = `{'descr': '|u1', 'fortran_order': False, 'shape': (${dims.join(', ')}), }`;
  const unpadded = 10 + dict.length + 1; // magic + version + length, the dict, '\n'
  const header = dict + ' '.repeat((64 - (unpadded % 64)) % 64) + '\n';
  const prefix = Buffer.alloc(10);
  prefix.write('\x93NUMPY', 0, 'latin1');
  prefix.writeUInt8(1, 6);
  prefix.writeUInt8(0, 7);
  prefix.writeUInt16LE(header.length, 8);
  return Buffer.concat([prefix, Buffer.from(header, 'latin1'), Buffer.from(data.buffer, data.byteOffset, data.length)]);
}

// --- noise in, pixels out ----------------------------------------------------------------------

function readNoise(file) {
  let buf;
  try {
    buf = fs.readFileSync(file);
  } catch (err) {
    throw new UsageError(`cannot read ${file}: ${err.code || err.message}`);
  }
  if (file.endsWith('.npy')) {
    const { dims, data } = readNpy(buf);
    if (dims.length !== 2 || dims[0] < 1) throw new UsageError(`noise must have shape (n, latent), got (${dims})`);
    return { dims, data };
  }
  let doc;
  try {
    doc = JSON.parse(buf.toString('utf8'));
  } catch (err) {
    throw new UsageError(`${file} is neither .npy nor valid JSON`);
  }
  const rows = Array.isArray(doc) ? doc : doc && doc.z;
  if (!Array.isArray(rows) || rows.length === 0 || !rows.every((r) => Array.isArray(r) && r.length === rows[0].length)) {
    throw new UsageError('JSON noise must be {"z": [[...], ...]}: a non-empty list of equally long vectors');
  }
  const flat = rows.flat();
  if (!flat.every((v) => typeof v === 'number' && Number.isFinite(v))) throw new UsageError('noise must be finite numbers');
  return { dims: [rows.length, rows[0].length], data: Float32Array.from(flat) };
}

// The model logic is the web page's (../web/sampler.js), run over onnxruntime-node.
let generatorPromise = null;

async function openGenerator(modelPath) {
  if (!generatorPromise) {
    generatorPromise = (async () => {
      const ort = require('onnxruntime-node');
      const { Generator } = await import('../web/sampler.js');
      let bytes;
      try {
        bytes = fs.readFileSync(modelPath);
      } catch (err) {
        throw new UsageError(`cannot read ${modelPath}: ${err.code || err.message}`);
      }
      try {
        return await Generator.load(ort, bytes);
      } catch (err) {
        throw new UsageError(`${modelPath}: ${err.message}`);
      }
    })();
  }
  return generatorPromise;
}

async function generate(modelPath, noise, label = null) {
  const generator = await openGenerator(modelPath);
  if (noise.dims[1] !== generator.latentDim) {
    throw new UsageError(`the model takes noise of shape (n, ${generator.latentDim}), got (${noise.dims})`);
  }
  let labels;
  try {
    labels = generator.labelsFor(noise.dims[0], label);
  } catch (err) {
    throw new UsageError(`--class: ${err.message}`);
  }
  try {
    return await generator.pixels(noise.data, labels);
  } catch (err) {
    throw new UsageError(err.message);
  }
}

function writeAtomically(file, bytes) {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    fs.writeFileSync(tmp, bytes);
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw new UsageError(`cannot write ${file}: ${err.code || err.message}`);
  }
}

function pixelsJson({ dims, data }) {
  // nested lists of any depth, like numpy's tolist(): [n][h][w] or [n][h][w][3]
  const nest = (offset, axis) => {
    if (axis === dims.length - 1) return Array.from(data.subarray(offset, offset + dims[axis]));
    const stride = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
    return Array.from({ length: dims[axis] }, (_, i) => nest(offset + i * stride, axis + 1));
  };
  return JSON.stringify({ shape: dims, dtype: 'uint8', pixels: nest(0, 0) });
}

const USAGE = 'usage: node generate.js MODEL.onnx (--seed S [--n N] [--truncation PSI] | NOISE.(npy|json)) ' +
  '[--class K] OUT.(npy|json)';

function parseArgs(argv) {
  const options = {};
  const positional = [];
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (['--seed', '--n', '--truncation', '--class'].includes(flag)) {
      if (i + 1 >= argv.length) throw new UsageError(`${flag} needs a value`);
      options[flag.slice(2)] = argv[++i];
    } else if (flag.startsWith('--')) {
      throw new UsageError(`unknown option ${flag}; ${USAGE}`);
    } else {
      positional.push(flag);
    }
  }
  const wanted = options.seed === undefined ? 3 : 2;
  if (positional.length !== wanted || (options.seed === undefined && (options.n || options.truncation))) {
    throw new UsageError(USAGE);
  }
  return { options, positional };
}

function seededNoise(generator, { seed, n = '25', truncation }) {
  if (!/^\d+$/.test(n) || Number(n) < 1 || Number(n) > 1e6) throw new UsageError(`--n must be from 1 to 1000000, got ${n}`);
  const psi = truncation === undefined ? null : Number(truncation);
  try {
    return { dims: [Number(n), generator.latentDim], data: generator.noise(seed, Number(n), { truncation: psi }) };
  } catch (err) {
    throw new UsageError(err.message);
  }
}

async function main(argv) {
  const { options, positional } = parseArgs(argv);
  const model = positional[0];
  const out = positional[positional.length - 1];
  let noise;
  if (options.seed !== undefined) {
    noise = seededNoise(await openGenerator(model), options);
  } else {
    noise = readNoise(positional[1]);
  }
  const pixels = await generate(model, noise, options.class === undefined ? null : options.class);
  writeAtomically(out, out.endsWith('.json') ? pixelsJson(pixels) : npyBytes(pixels.data, pixels.dims));
  const kind = pixels.dims.length === 4 ? 'RGB' : 'grey';
  console.log(`Wrote ${out}: ${pixels.dims[0]} ${kind} images of ${pixels.dims[1]}x${pixels.dims[2]} uint8 pixels`);
}

main(process.argv.slice(2)).catch((err) => {
  console.error(`Error: ${err instanceof UsageError ? err.message : String(err.stack || err).split('\n')[0]}`);
  process.exit(err instanceof UsageError ? 2 : 1);
});
