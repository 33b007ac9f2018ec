// Runs a segnet-exported ONNX model (--output logits) in ONNX Runtime on a raw float32 input and
// compares its logits with segnet's, written by the caller as raw float32 (same layout, N x K x H x W).
// Node has no image decoder, so the caller (segnet's test, or anyone with the segnet library) writes
// the tensors; this script only needs onnxruntime-node.
//   node check.mjs MODEL.onnx INPUT.bin NxCxHxW EXPECTED.bin [threads]
// Prints one JSON line: max_abs_diff, p99_abs_diff (the 99th percentile of the absolute differences),
// label_agreement (argmax over channels), ms (one run).
import * as ort from 'onnxruntime-node';
import { readFileSync } from 'node:fs';

const [model, inputFile, shape, expectedFile, threads = '2'] = process.argv.slice(2);
if (!expectedFile) {
  console.error('usage: node check.mjs MODEL.onnx INPUT.bin NxCxHxW EXPECTED.bin [threads]');
  process.exit(2);
}
const floats = (file) => {
  const b = readFileSync(file);
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
};
const dims = shape.split('x').map(Number);
const session = await ort.InferenceSession.create(model, {
  intraOpNumThreads: Number(threads),
  interOpNumThreads: 1,
});
const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', floats(inputFile), dims) };
await session.run(feeds);  // warm-up
const start = performance.now();
const out = (await session.run(feeds))[session.outputNames[0]];
const ms = performance.now() - start;

const got = out.data, want = floats(expectedFile);
if (got.length !== want.length) {
  console.error(`output has ${got.length} values (dims ${out.dims}), expected ${want.length}`);
  process.exit(1);
}
const diffs = Float64Array.from(got, (g, i) => Math.abs(g - want[i])).sort();
const maxDiff = diffs[diffs.length - 1];
const p99Diff = diffs[Math.floor(0.99 * (diffs.length - 1))];
const [n, k, h, w] = out.dims.map(Number);
let equal = 0;
const argmax = (data, b, p) => {
  let best = 0;
  for (let c = 1; c < k; ++c) if (data[(b * k + c) * h * w + p] > data[(b * k + best) * h * w + p]) best = c;
  return best;
};
for (let b = 0; b < n; ++b)
  for (let p = 0; p < h * w; ++p) equal += k === 1 ? ((got[b * h * w + p] >= 0) === (want[b * h * w + p] >= 0)) : argmax(got, b, p) === argmax(want, b, p);
console.log(JSON.stringify({ dims: out.dims.map(Number), max_abs_diff: maxDiff, p99_abs_diff: p99Diff, label_agreement: equal / (n * h * w), ms }));
