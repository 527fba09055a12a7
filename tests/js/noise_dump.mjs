// Writes the noise that examples/web/noise.js makes for each request, as raw little-endian
// float32, one request after another: node noise_dump.mjs REQUESTS.json OUT.bin
// REQUESTS: [{"seed": "decimal", "start": int, "count": int, "latent": int, "truncation": null|float}]
import { readFileSync, writeFileSync } from 'node:fs';
import { imageNoise } from '../../examples/web/noise.js';

const [requestsFile, outFile] = process.argv.slice(2);
const parts = JSON.parse(readFileSync(requestsFile, 'utf8')).map(
  (r) => imageNoise(r.seed, r.start, r.count, r.latent, r.truncation));
const total = parts.reduce((n, p) => n + p.length, 0);
const all = new Float32Array(total);
let offset = 0;
for (const p of parts) { all.set(p, offset); offset += p.length; }
writeFileSync(outFile, Buffer.from(all.buffer));
