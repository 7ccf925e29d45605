#!/usr/bin/env node
// End-to-end test of the web page in headless Chromium: load the page, wait for the model,
// choose an image, wait for the heatmap, optionally explain another class (picked from the
// class list, after typing --search TEXT into its search box), and write what the page
// computed, showed (the top 5 as listed) and downloaded to a JSON file.
//
//   node tests/web/e2e.mjs --url URL --image PATH --out RESULT.json --screenshot SHOT.png \
//       [--chromium /usr/bin/chromium] [--second-target K [--search TEXT]]
//
// playwright-core comes from web/node_modules (cd web && npm ci). Exits 1 with a message
// on any failure (page error state, timeout, console errors, requests after the image).
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { launch, waitForState } from './browser.mjs';

const TIMEOUT_MS = 120_000;

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    image: { type: 'string' },
    out: { type: 'string' },
    screenshot: { type: 'string' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    'second-target': { type: 'string' },
    search: { type: 'string' },
  },
});
for (const name of ['url', 'image', 'out', 'screenshot']) {
  if (!args[name]) usage(`--${name} is required`);
}
const secondTarget = args['second-target'] === undefined ? null : Number(args['second-target']);
if (secondTarget !== null && !Number.isInteger(secondTarget)) usage('--second-target must be an integer');

function usage(message) {
  console.error(`e2e: ${message}
usage: node tests/web/e2e.mjs --url URL --image PATH --out RESULT.json --screenshot SHOT.png [--chromium PATH] [--second-target K [--search TEXT]]`);
  process.exit(2);
}

const requests = []; // {url, bytes}, in the order they were sent
const pending = [];
const consoleErrors = [];
let imageChosenAt = Infinity; // index into requests

/** Run `action`, then wait for the run it starts to finish and return its window.rapResult. */
async function runAndRead(page, action, what) {
  await page.evaluate(() => {
    window.rapResult = null;
  });
  await action();
  await page.waitForFunction(() => window.rapResult || document.body.dataset.state === 'error', null, {
    timeout: TIMEOUT_MS,
  }).catch(() => {});
  await waitForState(page, ['done'], what, TIMEOUT_MS);
  const result = await page.evaluate(() => window.rapResult);
  if (!result) throw new Error(`the page finished ${what} without setting window.rapResult`);
  // What a reader sees: the top 5 as the page lists them.
  result.shownTop5 = await page.$$eval('#top5 li', (items) =>
    items.map((li) => ({
      label: li.querySelector('.name')?.textContent ?? '',
      percent: li.querySelector('.pct')?.textContent ?? '',
    })),
  );
  return result;
}

async function main() {
  const browser = await launch(args.chromium);
  const report = {
    first: null,
    second: null,
    load_to_first_heatmap_ms: null,
    bytes_downloaded: 0,
    requests: [],
    requests_after_image: [],
    console_errors: consoleErrors,
  };
  let failure = null;
  try {
    const page = await browser.newPage({ viewport: { width: 900, height: 900 } });
    page.on('request', (request) => {
      const entry = { url: request.url(), bytes: 0 };
      const index = requests.push(entry) - 1;
      if (index >= imageChosenAt) report.requests_after_image.push(entry.url);
      pending.push(
        request
          .response()
          .then((response) => response?.body())
          .then((body) => {
            entry.bytes = body ? body.length : 0;
          })
          .catch(() => {}),
      );
    });
    page.on('console', (message) => {
      if (message.type() === 'error') consoleErrors.push(message.text());
    });
    page.on('pageerror', (error) => consoleErrors.push(`uncaught: ${error.message}`));

    await page.goto(args.url, { timeout: TIMEOUT_MS });
    await waitForState(page, ['ready'], 'the model to load', TIMEOUT_MS);

    imageChosenAt = requests.length;
    report.first = await runAndRead(
      page,
      () => page.setInputFiles('#file', resolve(args.image)),
      'the explanation of the image',
    );
    report.load_to_first_heatmap_ms = await page.evaluate(
      () => performance.getEntriesByName('rap-first-heatmap')[0]?.startTime ?? null,
    );
    await page.screenshot({ path: args.screenshot, fullPage: true });

    if (secondTarget !== null) {
      if (args.search !== undefined) {
        await page.fill('#class-search', args.search);
        const listed = await page.$$eval('#target option', (options) => options.map((o) => o.value));
        if (!listed.includes(String(secondTarget))) {
          throw new Error(`searching '${args.search}' does not list class ${secondTarget} (lists ${listed.join(', ')})`);
        }
        report.search_listed = listed.length;
      }
      report.second = await runAndRead(
        page,
        () => page.selectOption('#target', String(secondTarget)),
        `the explanation of class ${secondTarget}`,
      );
      if (report.second.target !== secondTarget) {
        throw new Error(`asked to explain class ${secondTarget}, the page explained ${report.second.target}`);
      }
    }
    if (report.load_to_first_heatmap_ms === null) throw new Error("no performance mark 'rap-first-heatmap'");
  } catch (e) {
    failure = e.message;
  } finally {
    await Promise.all(pending);
    await browser.close();
  }

  report.requests = requests;
  report.bytes_downloaded = requests.reduce((sum, r) => sum + r.bytes, 0);
  writeFileSync(args.out, `${JSON.stringify(report)}\n`);

  const problems = [];
  if (failure) problems.push(failure);
  if (consoleErrors.length > 0) problems.push(`console errors: ${consoleErrors.join(' | ')}`);
  if (report.requests_after_image.length > 0) {
    problems.push(`requests after the image was chosen: ${report.requests_after_image.join(', ')}`);
  }
  if (problems.length > 0) {
    for (const p of problems) console.error(`e2e: FAILED: ${p}`);
    process.exit(1);
  }
  const f = report.first;
  console.log(
    `e2e: ok: predicted ${f.predicted}, relevance sum ${f.relevanceSum.toFixed(4)} ` +
      `(logit ${f.logits[f.target].toFixed(4)}), run ${f.runMs.toFixed(1)} ms, ` +
      `first heatmap ${report.load_to_first_heatmap_ms.toFixed(0)} ms after navigation, ` +
      `${report.bytes_downloaded} bytes in ${requests.length} requests`,
  );
}

main().catch((e) => {
  console.error(`e2e: FAILED: ${e.message}`);
  process.exit(1);
});
