// Runs a segnet-exported ONNX model (--output logits) in ONNX Runtime on PNG images and compares it
// with `segnet predict --precision fp32 --probabilities` of the same checkpoint on the same images.
//   node compare_images.mjs MODEL.onnx PREDICT_DIR BATCH THREADS IMAGE.png...
// Images are decoded here (a small PNG reader on node's zlib), not by segnet, and must have the
// model's input size (segnet predict resizes other sizes; ONNX Runtime would need the same resize).
// Prints one JSON line per image, then a summary line: label agreement (argmax, or p >= 0.5 for
// binary models), the largest absolute probability and log-probability differences, and ONNX
// Runtime's mean milliseconds per batch (the first batch, a warm-up, excluded).
import * as ort from 'onnxruntime-node';
import { readFileSync } from 'node:fs';
import { inflateSync } from 'node:zlib';
import { basename, extname, join } from 'node:path';

const [model, predictDir, batchArg, threadsArg, ...images] = process.argv.slice(2);
if (!images.length) {
  console.error('usage: node compare_images.mjs MODEL.onnx PREDICT_DIR BATCH THREADS IMAGE.png...');
  process.exit(2);
}
const fail = (file, problem) => {
  console.error(`${file}: ${problem}`);
  process.exit(1);
};

// PNG, 8 bits per sample, not interlaced: grey, RGB, palette, grey+alpha, RGBA -> RGB bytes.
function readPng(file) {
  const b = readFileSync(file);
  if (b.toString('latin1', 1, 4) !== 'PNG') fail(file, 'not a PNG file');
  let width, height, depth, type, interlace, palette;
  const data = [];
  for (let at = 8; at < b.length;) {
    const length = b.readUInt32BE(at), kind = b.toString('latin1', at + 4, at + 8), body = b.subarray(at + 8, at + 8 + length);
    if (kind === 'IHDR') [width, height, depth, type, interlace] = [body.readUInt32BE(0), body.readUInt32BE(4), body[8], body[9], body[12]];
    else if (kind === 'PLTE') palette = body;
    else if (kind === 'IDAT') data.push(body);
    else if (kind === 'IEND') break;
    at += 12 + length;
  }
  if (depth !== 8 || interlace !== 0) fail(file, `PNG with ${depth}-bit samples or interlacing is not supported here`);
  const channels = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[type];
  const raw = inflateSync(Buffer.concat(data)), stride = width * channels;
  const pixels = Buffer.alloc(height * stride);
  for (let y = 0; y < height; ++y) {
    const filter = raw[y * (stride + 1)], line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const out = pixels.subarray(y * stride, (y + 1) * stride), up = y ? pixels.subarray((y - 1) * stride, y * stride) : null;
    for (let i = 0; i < stride; ++i) {
      const a = i >= channels ? out[i - channels] : 0, c = up && i >= channels ? up[i - channels] : 0, u = up ? up[i] : 0;
      let predictor = 0;
      if (filter === 1) predictor = a;
      else if (filter === 2) predictor = u;
      else if (filter === 3) predictor = (a + u) >> 1;
      else if (filter === 4) {
        const p = a + u - c, pa = Math.abs(p - a), pb = Math.abs(p - u), pc = Math.abs(p - c);
        predictor = pa <= pb && pa <= pc ? a : pb <= pc ? u : c;
      }
      out[i] = (line[i] + predictor) & 255;
    }
  }
  const rgb = Buffer.alloc(width * height * 3);
  for (let p = 0; p < width * height; ++p)
    for (let k = 0; k < 3; ++k)
      rgb[3 * p + k] = type === 3 ? palette[3 * pixels[p] + k] : channels < 3 ? pixels[p * channels] : pixels[p * channels + k];
  return { width, height, rgb };
}

// segnet's STEM_probabilities.npy: float32, C order, shape (K, H, W).
function readNpy(file) {
  const b = readFileSync(file);
  const headerEnd = 10 + b.readUInt16LE(8), header = b.toString('latin1', 10, headerEnd);
  if (!header.includes("'<f4'") || header.includes("'fortran_order': True")) fail(file, `unexpected header ${header.trim()}`);
  const shape = header.match(/'shape': \(([^)]*)\)/)[1].split(',').filter((s) => s.trim()).map(Number);
  const copy = b.subarray(headerEnd);  // aligned copy: the header leaves the data at a 64-byte offset
  return { shape, data: new Float32Array(copy.buffer.slice(copy.byteOffset, copy.byteOffset + copy.byteLength)) };
}

const batch = Number(batchArg), threads = Number(threadsArg);
const session = await ort.InferenceSession.create(model, { intraOpNumThreads: threads, interOpNumThreads: 1 });
const total = { pixels: 0, agreeing: 0, maxProbDiff: 0, maxLogProbDiff: 0, ms: [] };
for (let first = 0; first < images.length; first += batch) {
  const group = images.slice(first, first + batch).map((file) => ({ file, ...readPng(file) }));
  const { width: w, height: h } = group[0];
  const input = new Float32Array(group.length * 3 * h * w);
  group.forEach((img, n) => {
    if (img.width !== w || img.height !== h) fail(img.file, `is ${img.height}x${img.width}; the batch's first image is ${h}x${w}`);
    for (let k = 0; k < 3; ++k) for (let p = 0; p < h * w; ++p) input[(n * 3 + k) * h * w + p] = img.rgb[3 * p + k];
  });
  const start = performance.now();
  let result;
  try {
    result = await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', input, [group.length, 3, h, w]) });
  } catch (e) {
    fail(model, `ONNX Runtime refused a ${group.length}x3x${h}x${w} input: ${e.message.split('\n')[0]}`);
  }
  if (first > 0) total.ms.push(performance.now() - start);
  const logits = result[session.outputNames[0]].data, k = Number(result[session.outputNames[0]].dims[1]);
  group.forEach((img, n) => {
    const stem = basename(img.file, extname(img.file));
    const segnet = readNpy(join(predictDir, `${stem}_probabilities.npy`));
    if (segnet.shape.join('x') !== [k === 1 ? 2 : k, h, w].join('x'))
      fail(img.file, `segnet's probabilities are ${segnet.shape.join('x')}, ONNX Runtime's ${k}x${h}x${w}`);
    const at = (c, p) => logits[(n * k + c) * h * w + p];
    let agreeing = 0, maxProbDiff = 0, maxLogProbDiff = 0;
    for (let p = 0; p < h * w; ++p) {
      const probs = [];
      if (k === 1) {
        const fg = 1 / (1 + Math.exp(-at(0, p)));
        probs.push(1 - fg, fg);
      } else {
        let top = -Infinity;
        for (let c = 0; c < k; ++c) top = Math.max(top, at(c, p));
        let sum = 0;
        for (let c = 0; c < k; ++c) sum += Math.exp(at(c, p) - top);
        for (let c = 0; c < k; ++c) probs.push(Math.exp(at(c, p) - top) / sum);
      }
      let ours = 0, theirs = 0;
      for (let c = 0; c < probs.length; ++c) {
        const s = segnet.data[c * h * w + p];
        maxProbDiff = Math.max(maxProbDiff, Math.abs(probs[c] - s));
        if (s > 1e-30 && probs[c] > 1e-30) maxLogProbDiff = Math.max(maxLogProbDiff, Math.abs(Math.log(probs[c]) - Math.log(s)));
        if (probs[c] > probs[ours]) ours = c;
        if (s > segnet.data[theirs * h * w + p]) theirs = c;
      }
      if (k === 1) (ours = probs[1] >= 0.5 ? 1 : 0), (theirs = segnet.data[h * w + p] >= 0.5 ? 1 : 0);
      agreeing += ours === theirs;
    }
    console.log(JSON.stringify({ image: img.file, label_agreement: agreeing / (h * w), max_prob_diff: maxProbDiff, max_log_prob_diff: maxLogProbDiff }));
    total.pixels += h * w;
    total.agreeing += agreeing;
    total.maxProbDiff = Math.max(total.maxProbDiff, maxProbDiff);
    total.maxLogProbDiff = Math.max(total.maxLogProbDiff, maxLogProbDiff);
  });
}
const mean = (xs) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);
console.log(JSON.stringify({
  summary: true, images: images.length, batch, threads, label_agreement: total.agreeing / total.pixels,
  differing_pixels: total.pixels - total.agreeing, max_prob_diff: total.maxProbDiff,
  max_log_prob_diff: total.maxLogProbDiff, onnxruntime_ms_per_batch: mean(total.ms),
}));
