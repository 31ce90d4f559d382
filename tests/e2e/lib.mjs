// What the browser tests share: a tiny step runner, polling, and Chromium (Debian's, through
// playwright-core, which never downloads a browser; CHROMIUM overrides the executable path).

import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
/** The host operator of the SaaS host the onboarding and SSO tests share (set up by the first). */
export const OPERATOR = { email: 'operator@host.example', password: 'operator-password-1', name: 'Operator' };
export const STEP_TIMEOUT = 10_000;
const OUT = join(dirname(fileURLToPath(import.meta.url)), 'out');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns something truthy (errors count as "not yet"), or throws. */
export async function until(what, fn, timeout = STEP_TIMEOUT) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    try {
      const r = await fn();
      if (r) return r;
    } catch (e) {
      last = e;
    }
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

let stepNo = 0;
let notes = [];
/** A detail line printed under the current step's result. */
export const note = (text) => notes.push(text);

export async function step(title, fn) {
  notes = [];
  stepNo += 1;
  const label = `[${String(stepNo).padStart(2, '0')}] ${title}`;
  process.stdout.write(`${label} ... `);
  const t0 = Date.now();
  try {
    const r = await fn();
    console.log(`ok (${Date.now() - t0} ms)`);
    for (const n of notes) console.log(`       ${n}`);
    return r;
  } catch (e) {
    console.log('FAILED');
    e.message = `${label}: ${e.message}`;
    throw e;
  }
}

/** Chromium with one page, its console errors collected, and locator shorthands. */
export async function openBrowser() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT);
  page.setDefaultNavigationTimeout(STEP_TIMEOUT);

  const consoleErrors = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') consoleErrors.push(msg.text());
  });
  page.on('pageerror', (err) => consoleErrors.push(`page error: ${err.message}`));

  const ui = {
    label: (text) => page.getByLabel(text, { exact: true }),
    button: (name) => page.getByRole('button', { name, exact: true }),
    heading: (name) => page.getByRole('heading', { name, exact: true }),
    nav: (name) => page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name, exact: true }),
    async expectNoFormError() {
      const err = page.getByTestId('form-error');
      if (await err.count()) throw new Error(`the page shows an error: ${await err.first().innerText()}`);
    },
  };
  return { browser, context, page, consoleErrors, ui };
}

/** Console errors that matter: an expected 401/400 answer is logged by Chromium too. */
export function relevantConsoleErrors(consoleErrors) {
  return consoleErrors.filter((t) => !/Failed to load resource: the server responded with a status of 40[01]/.test(t));
}

/** On failure: a full-page screenshot in out/<name>, the URL and the console. */
export async function reportFailure(page, consoleErrors, name = 'failure.png') {
  mkdirSync(OUT, { recursive: true });
  const shot = join(OUT, name);
  try {
    await page.screenshot({ path: shot, fullPage: true });
    console.error(`screenshot: ${shot}`);
  } catch (se) {
    console.error(`could not save a screenshot: ${se.message}`);
  }
  console.error(`page URL: ${page.url()}`);
  if (consoleErrors.length) console.error(`browser console errors:\n  ${consoleErrors.join('\n  ')}`);
}
