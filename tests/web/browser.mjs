// What the page tests (e2e.mjs for images, text.mjs for text) share: headless Chromium from
// web/node_modules' playwright-core, and waiting for the page's `data-state`.
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../web/package.json', import.meta.url));
const { chromium } = require('playwright-core');

/** Headless Chromium at `executablePath`. */
export function launch(executablePath) {
  return chromium.launch({
    executablePath,
    headless: true,
    // Chromium's sandbox refuses to run as root (CI runs as root).
    args: process.getuid?.() === 0 ? ['--no-sandbox'] : [],
  });
}

/** Wait until the page is in one of `states`; a page in state 'error' fails the test. */
export async function waitForState(page, states, what, timeoutMs) {
  try {
    await page.waitForFunction(
      (wanted) => wanted.includes(document.body.dataset.state) || document.body.dataset.state === 'error',
      states,
      { timeout: timeoutMs },
    );
  } catch {
    const state = await page.evaluate(() => document.body.dataset.state).catch(() => '?');
    throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what} (state '${state}')`);
  }
  const state = await page.evaluate(() => document.body.dataset.state);
  if (state === 'error') {
    const status = await page.textContent('#status');
    throw new Error(`the page is in state 'error' while waiting for ${what}: ${status}`);
  }
}
