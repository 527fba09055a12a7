// The page: controls in index.html, model logic in sampler.js, onnxruntime-web from npm.
//
// Query parameters: ?model=URL (default v1/model.onnx, the model `dcgan serve` serves),
// ?backend=wasm|webgpu (default: WebGPU where the browser has an adapter, else WASM),
// ?threads=N (WASM threads; more than one needs a cross-origin isolated page, which
// `dcgan serve` makes with its COOP/COEP headers).
//
// The page's state is on <body data-state="loading|ready|busy|error"> for scripts and tests.

import { Generator, gridImage } from './sampler.js';

// Imported when the page starts, so that a missing package is an error on the page, not a blank one.
const ORT_MODULE = './node_modules/onnxruntime-web/dist/ort.min.mjs';
let ort = null;

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const MAX_IMAGES = 256;

let generator = null;
let backend = null;
let pending = null; // the render waiting for the one in flight: only the newest is kept
let rendering = false;

function setState(state, message) {
  document.body.dataset.state = state;
  if (message !== undefined) $('status').textContent = message;
}

function showError(message) {
  $('error').textContent = message;
  $('error').hidden = false;
  setState('error');
}

function clearError() {
  $('error').hidden = true;
  $('error').textContent = '';
}

function configureWasm() {
  const threads = params.get('threads');
  if (threads !== null) {
    const n = Number(threads);
    if (!Number.isInteger(n) || n < 1 || n > 64) throw new Error(`threads must be an integer from 1 to 64, got ${threads}`);
    ort.env.wasm.numThreads = n;
  }
  if (!self.crossOriginIsolated) ort.env.wasm.numThreads = 1; // threads need SharedArrayBuffer
}

async function webgpuAvailable() {
  try {
    return Boolean(navigator.gpu && (await navigator.gpu.requestAdapter()));
  } catch {
    return false;
  }
}

async function loadModel(bytes, name) {
  if (!ort) throw new Error('onnxruntime-web is not loaded');
  generator = null;
  $('grid').width = 0;
  $('grid').height = 0;
  setState('loading', `Loading ${name}…`);
  const wanted = params.get('backend');
  if (wanted !== null && !['wasm', 'webgpu'].includes(wanted)) throw new Error(`backend must be wasm or webgpu, got ${wanted}`);
  const candidates = wanted ? [wanted] : (await webgpuAvailable()) ? ['webgpu', 'wasm'] : ['wasm'];
  let lastError = null;
  for (const ep of candidates) {
    try {
      generator = await Generator.load(ort, bytes, { executionProviders: [ep] });
      backend = ep;
      break;
    } catch (err) {
      lastError = err;
    }
  }
  if (!generator) throw new Error(`${name}: ${lastError.message}`);
  const [, h, w, c] = generator.session.outputMetadata?.find((m) => m.name === 'images')?.shape ?? [];
  const picture = h ? `${h}x${w} ${Number(c) === 3 ? 'RGB' : 'grey'}, ` : '';
  const threads = backend === 'wasm' ? `, ${ort.env.wasm.numThreads} thread${ort.env.wasm.numThreads > 1 ? 's' : ''}` : '';
  $('metadata').textContent = JSON.stringify(generator.metadata, null, 2);
  $('status').textContent = `${name}: ${picture}latent ${generator.latentDim} · backend ${backend}${threads}`;
  $('status').dataset.backend = backend;
  setupClassPicker();
}

function setupClassPicker() {
  const select = $('class');
  select.replaceChildren();
  $('class-field').hidden = !generator.hasLabels;
  if (!generator.hasLabels) return;
  const names = generator.classNames || Array.from({ length: 10 }, (_, i) => String(i));
  names.forEach((name, i) => select.append(new Option(`${i}: ${name}`, String(i))));
}

function readInputs() {
  const seed = $('seed').value.trim();
  const seedB = $('seed-b').value.trim();
  const n = Number($('n').value);
  if (!Number.isInteger(n) || n < 1 || n > MAX_IMAGES) throw new Error(`images must be an integer from 1 to ${MAX_IMAGES}`);
  const scale = Number($('scale').value);
  if (!Number.isInteger(scale) || scale < 1 || scale > 16) throw new Error('scale must be an integer from 1 to 16');
  const psiText = $('truncation').value.trim();
  const truncation = psiText === '' ? null : Number(psiText);
  const t = Number($('t').value);
  const label = generator.hasLabels ? Number($('class').value) : null;
  return { seed, seedB, n, scale, truncation, t, label };
}

async function render() {
  if (!generator) return;
  if (rendering) {
    pending = true;
    return;
  }
  rendering = true;
  try {
    do {
      pending = false;
      clearError();
      setState('busy');
      const { seed, seedB, n, scale, truncation, t, label } = readInputs();
      const started = performance.now();
      const pixels = t > 0 ? await generator.walk(seed, seedB, t, n, { truncation, label })
        : await generator.sample(seed, n, { truncation, label });
      const ms = performance.now() - started;
      const image = gridImage(pixels, scale);
      const canvas = $('grid');
      canvas.width = image.width;
      canvas.height = image.height;
      canvas.getContext('2d').putImageData(new ImageData(image.data, image.width, image.height), 0, 0);
      canvas.dataset.scale = String(scale);
      const what = t > 0 ? `seed ${seed} → ${seedB} at t = ${t.toFixed(2)}` : `seed ${seed}`;
      $('status').textContent = $('status').textContent.replace(/ · made .*$/, '') +
        ` · made ${n} image${n > 1 ? 's' : ''} of ${what} in ${ms.toFixed(0)} ms`;
      setState('ready');
    } while (pending);
  } catch (err) {
    showError(err.message);
  } finally {
    rendering = false;
  }
}

async function loadFromUrl(url) {
  let response;
  try {
    response = await fetch(url);
  } catch (err) {
    throw new Error(`cannot fetch ${url}: ${err.message}`);
  }
  if (!response.ok) throw new Error(`cannot fetch ${url}: HTTP ${response.status}`);
  await loadModel(new Uint8Array(await response.arrayBuffer()), url);
}

async function guarded(work) {
  try {
    clearError();
    await work();
    await render();
  } catch (err) {
    showError(err.message);
  }
}

function main() {
  $('model-url').value = params.get('model') || 'v1/model.onnx';
  $('controls').addEventListener('submit', (event) => {
    event.preventDefault();
    render();
  });
  $('load').addEventListener('click', () => guarded(async () => {
    const file = $('model-file').files[0];
    if (file) await loadModel(new Uint8Array(await file.arrayBuffer()), file.name);
    else await loadFromUrl($('model-url').value.trim());
  }));
  $('t').addEventListener('input', () => {
    $('t-value').textContent = Number($('t').value).toFixed(2);
    render();
  });
  for (const id of ['class', 'scale']) $(id).addEventListener('change', render);
  guarded(async () => {
    try {
      ort = await import(ORT_MODULE);
    } catch (err) {
      throw new Error(`cannot load onnxruntime-web (${err.message}): run \`npm ci\` in examples/web`);
    }
    configureWasm();
    await loadFromUrl($('model-url').value);
  });
}

main();
