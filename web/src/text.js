// The text view: for a text classifier (model.json `"kind": "text"`, served by `onnx-rap serve`
// for a model whose explained input is token ids). The page tokenises the text itself
// (bpe.js, with the model's tokenizer.json), feeds model_rap.onnx the ids and the attention
// mask, and shows the classes with their softmax percentages and the text with every token
// shaded by its relevance (`relevance`, [1, context]: the relevance of each token, summed
// over the embedding axis; over all positions it sums to the explained logit).
//
// The ids are [bos] + the tokens of the text, at most `context` of them, right-padded with
// pad; the mask is 1 on BOS and the text tokens, 0 on the padding.
import { Tokenizer } from './bpe.js';
import { classButton, el, fetchOk, percent, setState, softmax } from './util.js';

const ui = {
  text: el('text-input'),
  explain: el('explain'),
  tokenCount: el('token-count'),
  truncated: el('truncated'),
  classes: el('text-classes'),
  explained: el('text-explained'),
  sum: el('text-sum'),
  parts: el('text-parts'),
  runMs: el('text-run-ms'),
  tokens: el('tokens'),
  legendMin: el('legend-min'),
  legendMax: el('legend-max'),
  modelName: el('model-name'),
};

let cfg = null;
let ort = null;
let session = null;
let tokenizer = null;
let current = null; // the text being explained: {text, tokens, complete, ids, mask}
let queue = Promise.resolve(); // runs one at a time, in order

/** model.json of a text model, checked. */
function readConfig(json) {
  const c = { input: 'input_ids', mask: null, logits: 'logits', relevance: 'relevance', target_input: 'rap_target', ...json };
  const t = c.tokenizer ?? {};
  for (const key of ['context', 'bos_id', 'pad_id']) {
    if (!Number.isInteger(t[key]) || t[key] < 0) throw new Error(`model.json: "tokenizer.${key}" must be a whole number`);
  }
  if (t.context < 2) throw new Error('model.json: "tokenizer.context" must be 2 or more');
  if (typeof t.url !== 'string') throw new Error('model.json: "tokenizer.url" must name the tokenizer file');
  if (!Array.isArray(c.labels)) c.labels = [];
  return c;
}

const label = (k) => cfg.labels[k] ?? String(k);

/** Load the tokenizer and the model of a text model.json, then show the text view. */
export async function startText(json, ortModule) {
  ort = ortModule;
  try {
    cfg = readConfig(json);
    const [tok, bytes] = await Promise.all([
      fetchOk(cfg.tokenizer.url).then((r) => r.json()),
      fetchOk('model_rap.onnx').then((r) => r.arrayBuffer()),
    ]);
    tokenizer = new Tokenizer(tok);
    session = await ort.InferenceSession.create(new Uint8Array(bytes), { executionProviders: ['wasm'] });
  } catch (e) {
    setState('error', `The model failed to load: ${e.message}`);
    return;
  }
  const inputs = [cfg.input, cfg.mask, cfg.target_input].filter((n) => n !== null);
  const missing = [
    ...inputs.filter((n) => !session.inputNames.includes(n)),
    ...[cfg.logits, cfg.relevance].filter((n) => !session.outputNames.includes(n)),
  ];
  if (missing.length > 0) {
    setState(
      'error',
      `model_rap.onnx lacks ${missing.join(', ')}: compile it with ` +
        '`onnx-rap compile MODEL --target-input -o model_rap.onnx`.',
    );
    return;
  }
  ui.modelName.textContent = cfg.model ? `Model: ${cfg.model}.` : '';
  ui.text.disabled = false;
  ui.explain.disabled = false;
  ui.text.addEventListener('input', countTokens);
  ui.text.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) explainText();
  });
  ui.explain.addEventListener('click', explainText);
  countTokens();
  setState('ready', 'Model loaded. Type or paste a text and press Explain.');
}

/** At most context - 1 tokens of the text: the model sees BOS and them. */
function tokenise(text) {
  return tokenizer.encode(text, cfg.tokenizer.context - 1);
}

/**
 * The token count under the text box, as the user types; also `window.rapTokens`, the ids the
 * page would feed for this text (the test compares them with the Python tokenizer's).
 */
function countTokens() {
  const { tokens, complete } = tokenise(ui.text.value);
  const max = cfg.tokenizer.context - 1;
  ui.tokenCount.textContent = complete
    ? `${tokens.length} token${tokens.length === 1 ? '' : 's'} (of ${max})`
    : `over ${max} tokens: the model sees the first ${max}`;
  window.rapTokens = {
    text: ui.text.value,
    ids: [cfg.tokenizer.bos_id, ...tokens.map((t) => t.id)],
    truncated: !complete,
  };
}

/** Tokenise the text box and explain the predicted class. */
function explainText() {
  const text = ui.text.value;
  if (text.trim() === '') {
    setState('error', 'No text: type or paste something to classify.');
    return;
  }
  const { tokens, complete } = tokenise(text);
  const { context, bos_id: bos, pad_id: pad } = cfg.tokenizer;
  const ids = new BigInt64Array(context).fill(BigInt(pad));
  const mask = new BigInt64Array(context);
  ids[0] = BigInt(bos);
  mask[0] = 1n;
  tokens.forEach((t, k) => {
    ids[k + 1] = BigInt(t.id);
    mask[k + 1] = 1n;
  });
  current = { text, tokens, complete, ids, mask };
  enqueue(-1);
}

function enqueue(target) {
  queue = queue.then(() => explain(target));
  return queue;
}

/** Run the model on the current text; target < 0 explains the predicted class. */
async function explain(target) {
  if (!current) return;
  setState('running', 'Running…');
  const { context } = cfg.tokenizer;
  const feeds = {
    [cfg.input]: new ort.Tensor('int64', current.ids, [1, context]),
    [cfg.target_input]: new ort.Tensor('int64', BigInt64Array.of(BigInt(target)), [1]),
  };
  if (cfg.mask !== null) feeds[cfg.mask] = new ort.Tensor('int64', current.mask, [1, context]);
  let out;
  const t0 = performance.now();
  try {
    out = await session.run(feeds, [cfg.logits, cfg.relevance]);
  } catch (e) {
    setState('error', `The model failed to run: ${e.message}`);
    return;
  }
  const runMs = performance.now() - t0;

  const logits = Array.from(out[cfg.logits].data);
  const relevance = Array.from(out[cfg.relevance].data);
  const probs = softmax(logits);
  const predicted = logits.indexOf(Math.max(...logits));
  const explained = target < 0 ? predicted : target;
  const n = current.tokens.length;
  const sum = (values) => values.reduce((s, v) => s + v, 0);
  const parts = {
    bos: relevance[0],
    text: sum(relevance.slice(1, n + 1)),
    padding: sum(relevance.slice(n + 1)),
  };
  const relevanceSum = parts.bos + parts.text + parts.padding;

  showClasses(probs, explained);
  ui.explained.textContent =
    `Explained: ${label(explained)} (class ${explained}${explained === predicted ? ', the prediction' : ''}), ` +
    `logit ${logits[explained].toFixed(3)}, probability ${percent(probs[explained])}`;
  ui.sum.textContent = `${relevanceSum.toFixed(3)} (logit of ${label(explained)}: ${logits[explained].toFixed(3)})`;
  ui.parts.textContent =
    `text ${parts.text.toFixed(3)}, BOS ${parts.bos.toFixed(3)}, ` +
    `padding (${context - n - 1} positions) ${parts.padding.toFixed(3)}`;
  ui.runMs.textContent = `${runMs.toFixed(1)} ms`;
  const shown = showTokens(relevance);
  ui.truncated.hidden = current.complete;
  if (!current.complete) {
    ui.truncated.textContent =
      `The text is longer than ${context - 1} tokens: the model saw only the first ${context - 1} ` +
      `(up to character ${current.tokens[n - 1].end} of ${current.text.length}); the rest is greyed out.`;
  }

  window.rapText = {
    text: current.text,
    ids: Array.from(current.ids.slice(0, n + 1), Number),
    truncated: !current.complete,
    tokens: current.tokens.map((t) => ({ ...t, text: current.text.slice(t.start, t.end) })),
    predicted,
    target: explained,
    logits,
    probabilities: probs,
    relevance,
    relevanceSum,
    parts,
    scale: shown.scale,
    segments: shown.segments,
    runMs,
  };
  setState('done', `Explained class ${label(explained)}.`);
}

/** Every class with its probability; clicking one explains it. */
function showClasses(probs, explained) {
  ui.classes.replaceChildren(
    ...probs.map((p, k) => {
      const li = document.createElement('li');
      const button = classButton(label(k), p, k === explained, () => enqueue(k));
      button.dataset.class = String(k);
      li.append(button);
      return li;
    }),
  );
}

const RED = [214, 39, 40];
const BLUE = [31, 96, 192];

/** The colour of relevance r on a scale where |r| = scale is full red or blue, 0 white. */
function shade(r, scale) {
  const a = Math.min(1, Math.abs(r) / scale);
  const [cr, cg, cb] = r >= 0 ? RED : BLUE;
  const mix = (c) => Math.round(255 + (c - 255) * a);
  return { background: `rgb(${mix(cr)}, ${mix(cg)}, ${mix(cb)})`, dark: a > 0.55 };
}

const signed = (v) => `${v >= 0 ? '+' : ''}${v.toPrecision(3)}`;

/**
 * The text with every token shaded by its relevance, scaled by the largest |relevance| of
 * the text's tokens (BOS is shown too, on the same scale, clipped). A token whose span is
 * empty (the later bytes of a character split over several tokens) joins the token before
 * it, so every token's relevance is shown. Returns the scale and the shown segments.
 */
function showTokens(relevance) {
  const { text, tokens } = current;
  const segments = [];
  tokens.forEach((t, k) => {
    const last = segments[segments.length - 1];
    if (t.start === t.end && last) {
      last.ids.push(t.id);
      last.relevance += relevance[k + 1];
    } else {
      segments.push({ start: t.start, end: t.end, ids: [t.id], relevance: relevance[k + 1] });
    }
  });
  const scale = Math.max(...segments.map((s) => Math.abs(s.relevance)), 0) || 1;
  const span = (content, r, title, extra = '') => {
    const s = document.createElement('span');
    const { background, dark } = shade(r, scale);
    s.className = `tok${dark ? ' dark' : ''}${extra}`;
    s.style.background = background;
    s.textContent = content;
    s.title = title;
    s.dataset.relevance = String(r);
    return s;
  };
  const nodes = [span('BOS', relevance[0], `BOS (id ${cfg.tokenizer.bos_id}): relevance ${signed(relevance[0])}`, ' special')];
  let at = 0;
  for (const s of segments) {
    if (s.start > at) nodes.push(document.createTextNode(text.slice(at, s.start)));
    const piece = text.slice(s.start, s.end);
    const ids = s.ids.length === 1 ? `id ${s.ids[0]}` : `ids ${s.ids.join(', ')}`;
    nodes.push(span(piece, s.relevance, `${JSON.stringify(piece)} (${ids}): relevance ${signed(s.relevance)}`));
    at = s.end;
  }
  if (at < text.length) {
    const rest = document.createElement('span');
    rest.className = 'unseen';
    const more = text.length - at;
    rest.textContent = more > 400 ? `${text.slice(at, at + 400)}… (${more - 400} more characters)` : text.slice(at);
    rest.title = 'Not seen by the model (past the context length)';
    nodes.push(rest);
  }
  ui.tokens.replaceChildren(...nodes);
  ui.legendMin.textContent = signed(-scale);
  ui.legendMax.textContent = signed(scale);
  return { scale, segments };
}
