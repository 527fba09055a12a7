// Images/s of a generator in onnxruntime-node through examples/web/sampler.js (the module the
// page runs), for benchmarks/web_speed.py. Prints one JSON line: {"batch": images/s, ...}.
//
//   node benchmarks/web_speed_node.mjs MODEL.onnx THREADS SECONDS BATCH [BATCH ...]

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(new URL('../examples/node/package.json', import.meta.url));
const ort = require('onnxruntime-node');
const { Generator } = await import('../examples/web/sampler.js');

const [model, threads, seconds, ...batches] = process.argv.slice(2);
const generator = await Generator.load(ort, readFileSync(model), {
  intraOpNumThreads: Number(threads), interOpNumThreads: 1, executionMode: 'sequential',
});
const rates = {};
for (const batch of batches.map(Number)) {
  const z = generator.noise(0n, batch);
  await generator.pixels(z); // warm-up
  let images = 0;
  const start = performance.now();
  while (performance.now() - start < Number(seconds) * 1000) {
    await generator.pixels(z);
    images += batch;
  }
  rates[batch] = images / ((performance.now() - start) / 1000);
}
console.log(JSON.stringify(rates));
