// What the image and the text views of the page share.

export const el = (id) => document.getElementById(id);

/** The page's state (loading, ready, running, done, error; the tests wait on it) and status line. */
export function setState(state, message) {
  document.body.dataset.state = state;
  if (message !== undefined) el('status').textContent = message;
}

export async function fetchOk(url) {
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new Error(`${url}: cannot fetch it (${e.message})`);
  }
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status} ${response.statusText}`);
  return response;
}

export function softmax(logits) {
  const m = Math.max(...logits);
  const e = logits.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

/** A probability as a percentage: 40.8%, 0.012%, <0.001%. */
export const percent = (p) => {
  if (p >= 0.001) return `${(100 * p).toFixed(1)}%`;
  return p >= 0.00001 ? `${(100 * p).toFixed(3)}%` : '<0.001%';
};

/**
 * A class as a button showing its name, its probability and a bar as long as it; clicking
 * it calls `onClick`.
 */
export function classButton(name, probability, explained, onClick) {
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'class';
  button.title = `Explain ${name}`;
  if (explained) button.classList.add('explained');
  const label = document.createElement('span');
  label.className = 'name';
  label.textContent = name;
  const pct = document.createElement('span');
  pct.className = 'pct';
  pct.textContent = percent(probability);
  const bar = document.createElement('span');
  bar.className = 'bar';
  bar.style.width = `${(100 * probability).toFixed(1)}%`;
  button.append(label, pct, bar);
  button.addEventListener('click', onClick);
  return button;
}
