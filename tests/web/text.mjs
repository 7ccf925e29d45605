#!/usr/bin/env node
// End-to-end test of the page's text view in headless Chromium: load the page (served for a
// text model), type every prompt of the prompts file into the text box and read the ids the
// page computed (window.rapTokens), then explain a few of them (window.rapText), one of them
// also for its other class (clicking that class), and write it all to a JSON file.
//
//   node tests/web/text.mjs --url URL --prompts PROMPTS.json --explain 0,10 --out RESULT.json \
//       --screenshot SHOT.png [--chromium /usr/bin/chromium]
//
// PROMPTS.json: {"prompts": [{"text": ...}, ...]} (models/data/nanoguard_prompts.json). The
// screenshot is taken after the first explained prompt. Exits 1 with a message on any failure
// (page error state, timeout, console errors, a request to another server or after loading).
import { writeFileSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { launch, waitForState } from './browser.mjs';

const TIMEOUT_MS = 180_000;

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    prompts: { type: 'string' },
    explain: { type: 'string' },
    out: { type: 'string' },
    screenshot: { type: 'string' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
  },
});
for (const name of ['url', 'prompts', 'explain', 'out', 'screenshot']) {
  if (!args[name]) usage(`--${name} is required`);
}
const prompts = JSON.parse(readFileSync(args.prompts, 'utf8')).prompts;
const toExplain = args.explain.split(',').map(Number);
if (toExplain.some((k) => !Number.isInteger(k) || k < 0 || k >= prompts.length)) {
  usage(`--explain must list prompt indices below ${prompts.length}`);
}

function usage(message) {
  console.error(`text.mjs: ${message}
usage: node tests/web/text.mjs --url URL --prompts PROMPTS.json --explain I,J --out RESULT.json --screenshot SHOT.png [--chromium PATH]`);
  process.exit(2);
}

/** Run `action`, wait for the run it starts, and return window.rapText plus what is shown. */
async function runAndRead(page, action, what) {
  await page.evaluate(() => {
    window.rapText = null;
  });
  await action();
  await page
    .waitForFunction(() => window.rapText || document.body.dataset.state === 'error', null, { timeout: TIMEOUT_MS })
    .catch(() => {});
  await waitForState(page, ['done'], what, TIMEOUT_MS);
  const result = await page.evaluate(() => window.rapText);
  if (!result) throw new Error(`the page finished ${what} without setting window.rapText`);
  // What a reader sees: the classes as listed, the shaded tokens and their tooltips, the warning.
  result.shown = await page.evaluate(() => ({
    classes: [...document.querySelectorAll('#text-classes li')].map((li) => ({
      label: li.querySelector('.name')?.textContent ?? '',
      percent: li.querySelector('.pct')?.textContent ?? '',
      explained: li.querySelector('button')?.classList.contains('explained') ?? false,
    })),
    tokens: [...document.querySelectorAll('#tokens .tok')].map((s) => ({
      text: s.textContent,
      title: s.title,
      background: s.style.background,
    })),
    text: document.querySelector('#tokens').textContent,
    warning: document.querySelector('#truncated').hidden ? null : document.querySelector('#truncated').textContent,
    legend: [document.querySelector('#legend-min').textContent, document.querySelector('#legend-max').textContent],
  }));
  return result;
}

async function main() {
  const browser = await launch(args.chromium);
  const requests = [];
  const consoleErrors = [];
  let loaded = Infinity; // requests sent before the model was ready
  const report = { tokens: [], explained: [], other: null, requests, requests_after_load: [], console_errors: consoleErrors };
  let failure = null;
  try {
    const page = await browser.newPage({ viewport: { width: 900, height: 900 } });
    page.on('request', (request) => {
      if (requests.push(request.url()) > loaded) report.requests_after_load.push(request.url());
    });
    page.on('console', (message) => {
      if (message.type() === 'error') consoleErrors.push(message.text());
    });
    page.on('pageerror', (error) => consoleErrors.push(`uncaught: ${error.message}`));

    const t0 = Date.now();
    await page.goto(args.url, { timeout: TIMEOUT_MS });
    await waitForState(page, ['ready'], 'the model to load', TIMEOUT_MS);
    report.load_ms = Date.now() - t0;
    loaded = requests.length;

    // Typing: the ids the page would feed, for every prompt.
    for (const p of prompts) {
      await page.fill('#text-input', p.text);
      report.tokens.push(await page.evaluate(() => window.rapTokens));
    }

    for (const [n, k] of toExplain.entries()) {
      await page.fill('#text-input', prompts[k].text);
      const result = await runAndRead(page, () => page.click('#explain'), `the explanation of prompt ${k}`);
      result.prompt = k;
      report.explained.push(result);
      if (n === 0) {
        await page.screenshot({ path: args.screenshot, fullPage: true });
        // The other class, by clicking it.
        const other = 1 - result.predicted;
        report.other = await runAndRead(
          page,
          () => page.click(`#text-classes button[data-class="${other}"]`),
          `the explanation of class ${other}`,
        );
        report.other.prompt = k;
      }
    }
  } catch (e) {
    failure = e.message;
  } finally {
    await browser.close();
  }
  writeFileSync(args.out, `${JSON.stringify(report)}\n`);

  const problems = [];
  if (failure) problems.push(failure);
  if (consoleErrors.length > 0) problems.push(`console errors: ${consoleErrors.join(' | ')}`);
  const foreign = requests.filter((u) => !u.startsWith(args.url));
  if (foreign.length > 0) problems.push(`requests to other servers: ${foreign.join(', ')}`);
  if (report.requests_after_load.length > 0) {
    problems.push(`requests after the model loaded: ${report.requests_after_load.join(', ')}`);
  }
  if (problems.length > 0) {
    for (const p of problems) console.error(`text.mjs: FAILED: ${p}`);
    process.exit(1);
  }
  const runs = report.explained.map((r) => `prompt ${r.prompt}: ${r.runMs.toFixed(0)} ms`).join(', ');
  console.log(`text.mjs: ok: ${report.tokens.length} prompts tokenised, model loaded in ${report.load_ms} ms, runs ${runs}`);
}

main().catch((e) => {
  console.error(`text.mjs: FAILED: ${e.message}`);
  process.exit(1);
});
