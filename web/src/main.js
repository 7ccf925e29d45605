// Runs model_rap.onnx (compiled by `onnx-rap compile --target-input --colormap`) on an image
// the user picks, entirely in the browser, and shows its RAP heatmap. model.json beside the
// page says how to preprocess the image, exactly as the `onnx-rap explain` command does.
import * as ort from 'onnxruntime-web/wasm';

const WASM_FILE = 'ort-wasm-simd-threaded.wasm';

// One thread: no workers, no SharedArrayBuffer, so any static file server will do; the WASM
// binary is served from the page's own folder, never from a CDN.
ort.env.wasm.numThreads = 1;
ort.env.wasm.wasmPaths = { wasm: new URL(WASM_FILE, document.baseURI).href };
ort.env.logLevel = 'error';

const el = (id) => document.getElementById(id);
const ui = {
  file: el('file'),
  drop: el('drop'),
  target: el('target'),
  status: el('status'),
  input: el('input-canvas'),
  heatmap: el('heatmap-canvas'),
  prediction: el('prediction'),
  relevanceSum: el('relevance-sum'),
  runMs: el('run-ms'),
};

let cfg = null; // model.json
let session = null;
let inputData = null; // the preprocessed image (Float32Array), kept for re-runs
let queue = Promise.resolve(); // runs one at a time, in order
let firstHeatmapMarked = false;

function setState(state, message) {
  document.body.dataset.state = state;
  if (message !== undefined) ui.status.textContent = message;
}

async function fetchOk(url) {
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new Error(`${url}: cannot fetch it (${e.message})`);
  }
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status} ${response.statusText}`);
  return response;
}

/** Check model.json and fill in the defaults `onnx-rap explain` uses. */
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
    mean: [],
    std: [],
    ...json,
  };
  const size = c.size;
  if (!Array.isArray(size) || size.length !== 2 || !size.every((v) => Number.isInteger(v) && v > 0)) {
    throw new Error('model.json: "size" must be [height, width]');
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

async function loadModel() {
  try {
    cfg = readConfig(await (await fetchOk('model.json')).json());
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
  setState('ready', 'Model loaded. Choose or drop an image.');
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

/** Rec.709 luma of 8-bit RGB, as the Rust image crate computes it (integer division). */
const luma = (r, g, b) => Math.floor((2126 * r + 7152 * g + 722 * b) / 10000);

/** The model input: resize, grayscale if asked, (p / 255 - mean) / std, in float32. */
function preprocess(rgba) {
  const [h, w] = cfg.size;
  const c = cfg.channels;
  const n = h * w;
  const mean = Array.from({ length: c }, (_, k) => Math.fround(pick(cfg.mean, k, 0)));
  const std = Array.from({ length: c }, (_, k) => Math.fround(pick(cfg.std, k, 1)));
  const data = new Float32Array(c * n);
  const nchw = cfg.layout === 'nchw';
  for (let i = 0; i < n; i++) {
    const r = rgba[4 * i];
    const g = rgba[4 * i + 1];
    const b = rgba[4 * i + 2];
    for (let k = 0; k < c; k++) {
      const p = c === 1 ? luma(r, g, b) : [r, g, b][k];
      const v = Math.fround(Math.fround(p / 255) - mean[k]) / std[k];
      data[nchw ? k * n + i : i * c + k] = v;
    }
  }
  return data;
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
  const [h, w] = cfg.size;
  ui.input.width = w;
  ui.input.height = h;
  const ctx = ui.input.getContext('2d', { willReadFrequently: true });
  ctx.clearRect(0, 0, w, h);
  ctx.drawImage(bitmap, 0, 0, w, h); // no scaling when the image already has the model's size
  bitmap.close();
  inputData = preprocess(ctx.getImageData(0, 0, w, h).data);
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
  const predicted = logits.indexOf(Math.max(...logits));
  const explained = target < 0 ? predicted : target;
  const relevanceSum = heatmap.data.reduce((s, v) => s + v, 0);

  fillTargets(logits.length);
  drawRgb(rgb.data, hh, hw);
  if (!firstHeatmapMarked) {
    performance.mark('rap-first-heatmap');
    firstHeatmapMarked = true;
  }
  const label = (k) => cfg.labels[k] ?? String(k);
  ui.prediction.textContent =
    `Predicted: ${label(predicted)} (class ${predicted}, logit ${logits[predicted].toFixed(3)})`;
  ui.target.value = String(explained);
  ui.target.disabled = false;
  ui.relevanceSum.textContent =
    `${relevanceSum.toFixed(3)} (logit of ${label(explained)}: ${logits[explained].toFixed(3)})`;
  ui.runMs.textContent = `${runMs.toFixed(1)} ms`;

  window.rapResult = {
    predicted,
    target: explained,
    logits,
    heatmap: Array.from(heatmap.data),
    heatmapRgb: Array.from(rgb.data),
    height: hh,
    width: hw,
    relevanceSum,
    runMs,
  };
  setState('done', `Explained class ${label(explained)}.`);
}

function drawRgb(rgb, h, w) {
  ui.heatmap.width = w;
  ui.heatmap.height = h;
  const image = new ImageData(w, h);
  for (let i = 0; i < w * h; i++) {
    image.data[4 * i] = rgb[3 * i];
    image.data[4 * i + 1] = rgb[3 * i + 1];
    image.data[4 * i + 2] = rgb[3 * i + 2];
    image.data[4 * i + 3] = 255;
  }
  ui.heatmap.getContext('2d').putImageData(image, 0, 0);
}

/** One option per class; labels from model.json, else the class numbers. */
function fillTargets(classes) {
  if (ui.target.options.length > 0) return;
  for (let k = 0; k < classes; k++) ui.target.add(new Option(cfg.labels[k] ?? String(k), String(k)));
}

ui.file.addEventListener('change', () => useFile(ui.file.files[0]));
ui.target.addEventListener('change', () => enqueue(Number(ui.target.value)));

// Dropping a file anywhere must not navigate away from the page.
for (const type of ['dragover', 'drop']) window.addEventListener(type, (e) => e.preventDefault());
ui.drop.addEventListener('dragover', () => ui.drop.classList.add('over'));
ui.drop.addEventListener('dragleave', () => ui.drop.classList.remove('over'));
ui.drop.addEventListener('drop', (e) => {
  ui.drop.classList.remove('over');
  useFile(e.dataTransfer.files[0]);
});

loadModel();
