// Runs model_rap.onnx (compiled by `onnx-rap compile --target-input --colormap`) on an image
// the user picks, entirely in the browser, and shows the crop the model saw, its RAP heatmap,
// the top 5 classes and a searchable class picker. model.json beside the page says how to
// preprocess the image as `onnx-rap explain` does (plain resize, or shorter-side resize and
// centre crop); the resampling is the browser canvas's, close to but not bit-equal with the
// Rust bicubic. When model.json says `"kind": "text"`, the text view of text.js runs instead.
import * as ort from 'onnxruntime-web/wasm';
import { startText } from './text.js';
import { classButton, el, fetchOk, percent, setState, softmax } from './util.js';

const WASM_FILE = 'ort-wasm-simd-threaded.wasm';

// One thread: no workers, no SharedArrayBuffer, so any static file server will do; the WASM
// binary is served from the page's own folder, never from a CDN.
ort.env.wasm.numThreads = 1;
ort.env.wasm.wasmPaths = { wasm: new URL(WASM_FILE, document.baseURI).href };
ort.env.logLevel = 'error';

const ui = {
  file: el('file'),
  drop: el('drop'),
  target: el('target'),
  search: el('class-search'),
  classCount: el('class-count'),
  modelName: el('model-name'),
  input: el('input-canvas'),
  inputCaption: el('input-caption'),
  heatmap: el('heatmap-canvas'),
  top5: el('top5'),
  explained: el('explained'),
  relevanceSum: el('relevance-sum'),
  runMs: el('run-ms'),
};

let cfg = null; // model.json
let session = null;
let inputData = null; // the preprocessed image (Float32Array), kept for re-runs
let cropRgb = null; // the crop the model saw, 8-bit RGB, for the test
let classes = 0; // number of classes, once known
let queue = Promise.resolve(); // runs one at a time, in order
let firstHeatmapMarked = false;

const isPair = (v) => Array.isArray(v) && v.length === 2 && v.every((x) => Number.isInteger(x) && x > 0);

/**
 * Check model.json and fill in the defaults `onnx-rap explain` uses. Two forms of
 * preprocessing: a plain resize to `size` ([height, width]), or the photo form: the shorter
 * side resized to `resize`, then the centre crop `crop` (= size).
 */
function readConfig(json) {
  const c = {
    input: 'input',
    logits: 'logits',
    target_input: 'rap_target',
    heatmap: 'heatmap',
    heatmap_rgb: 'heatmap_rgb',
    layout: 'nchw',
    channels: 1,
    grayscale: false,
    resize: null,
    crop: null,
    interpolation: 'bilinear',
    mean: [],
    std: [],
    ...json,
  };
  if (!isPair(c.size) && isPair(c.crop)) c.size = c.crop;
  if (!isPair(c.size)) throw new Error('model.json: "size" must be [height, width]');
  if (c.resize !== null && !(Number.isInteger(c.resize) && c.resize > 0)) {
    throw new Error('model.json: "resize" must be a positive integer (the shorter side) or null');
  }
  if (c.resize !== null && c.crop !== null && !(isPair(c.crop) && c.crop.every((v, i) => v === c.size[i]))) {
    throw new Error('model.json: "crop" must equal "size", the model input [height, width]');
  }
  if (c.channels !== 1 && c.channels !== 3) throw new Error('model.json: "channels" must be 1 or 3');
  if (c.layout !== 'nchw' && c.layout !== 'nhwc') throw new Error('model.json: "layout" must be nchw or nhwc');
  if (!Array.isArray(c.labels)) c.labels = [];
  return c;
}

/** The mean or std of channel k, as the Rust `pick` reads it (one value serves all). */
function pick(values, k, fallback) {
  if (values.length === 0) return fallback;
  if (values.length === 1) return values[0];
  return k < values.length ? values[k] : fallback;
}

const label = (k) => cfg.labels[k] ?? String(k);

async function loadModel() {
  try {
    const json = await (await fetchOk('model.json')).json();
    document.body.dataset.mode = json.kind === 'text' ? 'text' : 'image';
    if (json.kind === 'text') {
      await startText(json, ort);
      return;
    }
    cfg = readConfig(json);
    const bytes = new Uint8Array(await (await fetchOk('model_rap.onnx')).arrayBuffer());
    session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'] });
  } catch (e) {
    setState('error', `The model failed to load: ${e.message}`);
    return;
  }
  const missing = [
    ...[cfg.input, cfg.target_input].filter((n) => !session.inputNames.includes(n)),
    ...[cfg.logits, cfg.heatmap, cfg.heatmap_rgb].filter((n) => !session.outputNames.includes(n)),
  ];
  if (missing.length > 0) {
    setState(
      'error',
      `model_rap.onnx lacks ${missing.join(', ')}: compile it with ` +
        '`onnx-rap compile MODEL --target-input --colormap -o model_rap.onnx`.',
    );
    return;
  }
  const [h, w] = cfg.size;
  ui.modelName.textContent = cfg.model ? `Model: ${cfg.model}.` : '';
  ui.inputCaption.textContent =
    cfg.resize !== null
      ? `What the model sees: shorter side resized to ${cfg.resize}, centre crop ${w}x${h}`
      : `What the model sees: resized to ${w}x${h}${cfg.grayscale || cfg.channels === 1 ? ', gray' : ''}`;
  sizeCanvas(ui.input, w, h);
  sizeCanvas(ui.heatmap, w, h);
  if (cfg.labels.length > 0) setClasses(cfg.labels.length);
  setState('ready', 'Model loaded. Choose or drop an image.');
}

/**
 * Show a w x h canvas at least 224 pixels on its short side, enlarged by a whole factor
 * (pixels replicated), as `explain` enlarges its pictures.
 */
function sizeCanvas(canvas, w, h) {
  canvas.width = w;
  canvas.height = h;
  const k = Math.max(1, Math.ceil(224 / Math.max(1, Math.min(w, h))));
  canvas.style.width = `${w * k}px`;
  canvas.style.height = `${h * k}px`;
  canvas.classList.toggle('pixelated', k > 1);
}

/** Decode without colour management or premultiplication, so pixels keep their file values. */
async function decode(file) {
  try {
    return await createImageBitmap(file, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  } catch (e) {
    if (e instanceof TypeError) return createImageBitmap(file); // options not supported
    throw e;
  }
}

/** PIL's "L" (ITU-R 601-2 luma) of 8-bit RGB, as `onnx-rap explain` converts colour to gray. */
const luma = (r, g, b) => (19595 * r + 38470 * g + 7471 * b + 0x8000) >>> 16;

/**
 * (width, height) after resizing w x h so that the shorter side is s: the long side is
 * floor(s * long / short), as src/image.rs `shorter_side` computes it.
 */
function shorterSide(w, h, s) {
  const scale = (long, short) => Math.floor((s * long) / short);
  return w <= h ? [s, scale(h, w)] : [scale(w, h), s];
}

/** Offset of a centre crop of `crop` out of `full`: (full - crop) / 2 rounded half to even. */
function centreOffset(full, crop) {
  const d = Math.max(0, full - crop);
  const half = Math.floor(d / 2);
  return d % 2 === 1 && half % 2 === 1 ? half + 1 : half;
}

/**
 * Draw the image as the model sees it onto the input canvas: a plain resize to cfg.size, or
 * the shorter side resized to cfg.resize and the centre crop. The browser's canvas resamples
 * (imageSmoothingQuality "high"): close to, not bit-equal with, the Rust bicubic of `explain`.
 */
function fit(bitmap) {
  const [h, w] = cfg.size;
  const ctx = ui.input.getContext('2d', { willReadFrequently: true });
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = 'high';
  ctx.clearRect(0, 0, w, h);
  if (cfg.resize === null) {
    ctx.drawImage(bitmap, 0, 0, w, h); // no scaling when the image already has the model's size
    return ctx.getImageData(0, 0, w, h).data;
  }
  const [nw, nh] = shorterSide(bitmap.width, bitmap.height, cfg.resize);
  if (nh < h || nw < w) {
    throw new Error(
      `resized to ${nw}x${nh} (shorter side ${cfg.resize}), the image is smaller than the crop ${w}x${h}`,
    );
  }
  const full = document.createElement('canvas');
  full.width = nw;
  full.height = nh;
  const fctx = full.getContext('2d', { willReadFrequently: true });
  fctx.imageSmoothingEnabled = true;
  fctx.imageSmoothingQuality = 'high';
  fctx.drawImage(bitmap, 0, 0, nw, nh);
  const crop = fctx.getImageData(centreOffset(nw, w), centreOffset(nh, h), w, h);
  ctx.putImageData(crop, 0, 0);
  return crop.data;
}

/** The model input: grayscale if asked, (p / 255 - mean) / std, in float32; the RGB crop. */
function preprocess(rgba) {
  const [h, w] = cfg.size;
  const c = cfg.channels;
  const n = h * w;
  const mean = Array.from({ length: c }, (_, k) => Math.fround(pick(cfg.mean, k, 0)));
  const std = Array.from({ length: c }, (_, k) => Math.fround(pick(cfg.std, k, 1)));
  const data = new Float32Array(c * n);
  const rgb = new Uint8Array(3 * n);
  const nchw = cfg.layout === 'nchw';
  for (let i = 0; i < n; i++) {
    const r = rgba[4 * i];
    const g = rgba[4 * i + 1];
    const b = rgba[4 * i + 2];
    const px = c === 1 ? [luma(r, g, b)] : [r, g, b];
    for (let k = 0; k < c; k++) {
      const v = Math.fround(Math.fround(px[k] / 255) - mean[k]) / std[k];
      data[nchw ? k * n + i : i * c + k] = v;
    }
    for (let k = 0; k < 3; k++) rgb[3 * i + k] = px[c === 1 ? 0 : k];
  }
  return { data, rgb };
}

async function useFile(file) {
  if (!session) return;
  if (!file) {
    setState('error', 'No file: choose or drop an image file.');
    return;
  }
  let bitmap;
  try {
    bitmap = await decode(file);
  } catch {
    setState('error', `${file.name} is not an image this browser can read (PNG or JPEG).`);
    return;
  }
  let rgba;
  try {
    rgba = fit(bitmap);
  } catch (e) {
    setState('error', `${file.name}: ${e.message}`);
    return;
  } finally {
    bitmap.close();
  }
  const { data, rgb } = preprocess(rgba);
  inputData = data;
  cropRgb = rgb;
  if (cfg.channels === 1) drawRgb(rgb, cfg.size[0], cfg.size[1], ui.input); // show the gray the model saw
  enqueue(-1);
}

function enqueue(target) {
  queue = queue.then(() => explain(target));
  return queue;
}

/** Run the model on the current image; target < 0 explains the predicted class. */
async function explain(target) {
  if (!inputData) return;
  setState('running', 'Running…');
  const [h, w] = cfg.size;
  const dims = cfg.layout === 'nchw' ? [1, cfg.channels, h, w] : [1, h, w, cfg.channels];
  const feeds = {
    [cfg.input]: new ort.Tensor('float32', inputData, dims),
    [cfg.target_input]: new ort.Tensor('int64', BigInt64Array.of(BigInt(target)), [1]),
  };
  let out;
  const t0 = performance.now();
  try {
    out = await session.run(feeds, [cfg.logits, cfg.heatmap, cfg.heatmap_rgb]);
  } catch (e) {
    setState('error', `The model failed to run: ${e.message}`);
    return;
  }
  const runMs = performance.now() - t0;

  const logits = Array.from(out[cfg.logits].data);
  const heatmap = out[cfg.heatmap];
  const rgb = out[cfg.heatmap_rgb];
  const [, hh, hw] = heatmap.dims;
  const probs = softmax(logits);
  const order = logits.map((_, k) => k).sort((a, b) => logits[b] - logits[a] || a - b);
  const predicted = order[0];
  const explained = target < 0 ? predicted : target;
  const relevanceSum = heatmap.data.reduce((s, v) => s + v, 0);
  const top5 = order.slice(0, 5).map((k) => ({ class: k, label: label(k), probability: probs[k] }));

  if (classes === 0) setClasses(logits.length);
  drawRgb(rgb.data, hh, hw, ui.heatmap);
  if (!firstHeatmapMarked) {
    performance.mark('rap-first-heatmap');
    firstHeatmapMarked = true;
  }
  showTop5(top5, explained);
  ui.explained.textContent =
    `Explained: ${label(explained)} (class ${explained}${explained === predicted ? ', the prediction' : ''}), ` +
    `logit ${logits[explained].toFixed(3)}, probability ${percent(probs[explained])}`;
  selectClass(explained);
  ui.relevanceSum.textContent =
    `${relevanceSum.toFixed(3)} (logit of ${label(explained)}: ${logits[explained].toFixed(3)})`;
  ui.runMs.textContent = `${runMs.toFixed(1)} ms`;

  window.rapResult = {
    predicted,
    target: explained,
    logits,
    top5,
    heatmap: Array.from(heatmap.data),
    heatmapRgb: Array.from(rgb.data),
    height: hh,
    width: hw,
    relevanceSum,
    runMs,
    // What the model was fed, for the test: the input tensor and the crop it came from.
    input: Array.from(inputData),
    inputDims: dims,
    crop: Array.from(cropRgb),
  };
  setState('done', `Explained class ${label(explained)}.`);
}

/** The five most probable classes; clicking one explains it. */
function showTop5(top5, explained) {
  ui.top5.replaceChildren(
    ...top5.map(({ class: k, probability }) => {
      const li = document.createElement('li');
      const button = classButton(label(k), probability, k === explained, () => enqueue(k));
      button.dataset.class = String(k);
      li.append(button);
      return li;
    }),
  );
}

function drawRgb(rgb, h, w, canvas) {
  canvas.width = w;
  canvas.height = h;
  const image = new ImageData(w, h);
  for (let i = 0; i < w * h; i++) {
    image.data[4 * i] = rgb[3 * i];
    image.data[4 * i + 1] = rgb[3 * i + 1];
    image.data[4 * i + 2] = rgb[3 * i + 2];
    image.data[4 * i + 3] = 255;
  }
  canvas.getContext('2d').putImageData(image, 0, 0);
}

/** The class picker: every class, labels from model.json, else the class numbers. */
function setClasses(n) {
  classes = n;
  ui.search.disabled = false;
  ui.target.disabled = false;
  filterClasses();
}

/** Show the classes whose name or number contains the search text. */
function filterClasses() {
  const query = ui.search.value.trim().toLowerCase();
  const selected = ui.target.value;
  const options = [];
  for (let k = 0; k < classes; k++) {
    const name = label(k);
    if (query && !name.toLowerCase().includes(query) && String(k) !== query) continue;
    options.push(new Option(name === String(k) ? name : `${name} (${k})`, String(k)));
  }
  ui.target.replaceChildren(...options);
  if (options.some((o) => o.value === selected)) ui.target.value = selected;
  ui.classCount.textContent = query
    ? `${options.length} of ${classes} classes match`
    : `${classes} classes`;
}

/** Select class k in the picker, clearing a search that hides it. */
function selectClass(k) {
  if (![...ui.target.options].some((o) => o.value === String(k))) {
    ui.search.value = '';
    filterClasses();
  }
  ui.target.value = String(k);
}

ui.file.addEventListener('change', () => useFile(ui.file.files[0]));
ui.target.addEventListener('change', () => {
  if (ui.target.value !== '') enqueue(Number(ui.target.value));
});
ui.search.addEventListener('input', filterClasses);
ui.search.addEventListener('keydown', (e) => {
  // Enter explains the first match.
  if (e.key === 'Enter' && ui.target.options.length > 0) {
    ui.target.value = ui.target.options[0].value;
    enqueue(Number(ui.target.value));
  }
});

// Dropping a file anywhere must not navigate away from the page.
for (const type of ['dragover', 'drop']) window.addEventListener(type, (e) => e.preventDefault());
ui.drop.addEventListener('dragover', () => ui.drop.classList.add('over'));
ui.drop.addEventListener('dragleave', () => ui.drop.classList.remove('over'));
ui.drop.addEventListener('drop', (e) => {
  ui.drop.classList.remove('over');
  useFile(e.dataTransfer.files[0]);
});

loadModel();
