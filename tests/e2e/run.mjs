#!/usr/bin/env node
// End-to-end browser test of the InfraPilot dashboard.
//
//   INFRAPILOT_URL=http://127.0.0.1:18181 node run.mjs
//
// Needs a freshly started server with an empty data dir (first-run setup must
// be pending). Uses Debian's Chromium through playwright-core, which never
// downloads a browser; CHROMIUM overrides the executable path.
//
// Flow: setup -> sign in -> Profile -> enrol TOTP (code computed here, RFC 6238)
// -> backup codes -> sign out -> sign in with a fresh TOTP code -> Audit log
// shows setup.complete, mfa.enable, auth.login -> Verify chain says OK ->
// Nodes: the built-in node online, an enrollment token with its install
// one-liner -> the node's containers grouped by compose stack with live memory
// -> a container's logs (paged, then followed live) -> its terminal (xterm.js,
// a command's output, exit code) -> delete with the name typed as confirmation.
// The containers come from the Docker engine at DOCKER_HOST (test.sh starts
// one and imports infrapilot-test/busybox:latest); the docker CLI only sets up
// and checks fixtures here, the product never uses it.
// Exit 0 on success; on failure a message, exit 1 and out/failure.png.

import { execFileSync } from 'node:child_process';
import { createServer, request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHROMIUM, STEP_TIMEOUT, note, openBrowser, relevantConsoleErrors, reportFailure, sleep, step, until } from './lib.mjs';

const BASE = (process.env.INFRAPILOT_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
const SETUP_CODE = (process.env.E2E_SETUP_CODE || '').trim();

const ADMIN = {
  name: 'E2E Admin',
  email: 'admin@example.com',
  password: 'e2e-correct-horse-battery',
};

// ---- TOTP (RFC 6238 over RFC 4226 HOTP; HMAC-SHA1, 30 s, 6 digits) -------------

function base32Decode(input) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const clean = input.toUpperCase().replace(/[\s=-]/g, '');
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of clean) {
    const idx = alphabet.indexOf(ch);
    if (idx < 0) throw new Error(`invalid base32 character ${JSON.stringify(ch)} in secret`);
    value = (value << 5) | idx;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

function hotp(key, counter, digits = 6) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac('sha1', key).update(msg).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const bin = (mac.readUInt32BE(offset) & 0x7fffffff) % 10 ** digits;
  return String(bin).padStart(digits, '0');
}

const timeStep = (ms = Date.now()) => Math.floor(ms / 1000 / 30);
const totp = (secretB32, step) => hotp(base32Decode(secretB32), step);

function selfTestTotp() {
  // RFC 6238 appendix B, SHA-1, T = 59 s: 94287082 (8 digits).
  const key = Buffer.from('12345678901234567890');
  if (hotp(key, 1, 8) !== '94287082') throw new Error('TOTP self-test failed (RFC 6238 vector)');
  // Base32 of the same key.
  if (!base32Decode('GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ').equals(key)) throw new Error('base32 self-test failed');
}

// ---- Docker fixtures (the test's own set-up; the product talks to Docker through its agent) ----

const IMAGE = 'infrapilot-test/busybox:latest';
const STACK = 'e2eshop';
const PROXY_HTTP_PORT = Number(process.env.E2E_PROXY_HTTP_PORT || 0);
const PROXY_HTTPS_PORT = Number(process.env.E2E_PROXY_HTTPS_PORT || 0);

/** GET / over HTTPS through nginx for `host`, trusting only `ca` (PEM): [status, body]. */
function throughNginxTls(host, ca) {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      { host: '127.0.0.1', port: PROXY_HTTPS_PORT, path: '/', servername: host, headers: { Host: host }, ca, timeout: 3000 },
      (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve([res.statusCode, body]));
      },
    );
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

/** GET / through the node's nginx with this Host header: [status, body]. */
function throughNginx(host) {
  return new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port: PROXY_HTTP_PORT, path: '/', headers: { Host: host }, timeout: 3000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve([res.statusCode, Buffer.concat(chunks).toString('utf8')]));
    });
    req.on('error', () => resolve([0, '']));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}
const docker = (...args) => execFileSync('docker', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();

function startStack() {
  for (const service of ['web', 'worker']) {
    const name = `${STACK}-${service}`;
    try {
      docker('rm', '-f', name);
    } catch {
      /* not there */
    }
    docker(
      'run', '-d', '--name', name,
      '--label', `com.docker.compose.project=${STACK}`,
      '--label', `com.docker.compose.service=${service}`,
      '--env', 'E2E_SECRET=hunter2',
      IMAGE, 'sh', '-c', `i=0; while :; do i=$((i+1)); echo "${service} tick $i"; sleep 1; done`,
    );
  }
}

function removeStack() {
  for (const service of ['web', 'worker']) {
    try {
      docker('rm', '-f', `${STACK}-${service}`);
    } catch {
      /* already gone */
    }
  }
}

/** The highest "tick N" in a list of log line texts, or -1. */
function lastTick(lines) {
  let max = -1;
  for (const l of lines) {
    const m = /tick (\d+)/.exec(l);
    if (m) max = Math.max(max, Number(m[1]));
  }
  return max;
}


async function waitForServer() {
  const deadline = Date.now() + STEP_TIMEOUT;
  let last;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${BASE}/api/v1/setup`);
      if (res.ok) {
        const body = await res.json();
        if (!body.needed) throw new Error('setup is not needed: start the server with an empty data dir');
        return;
      }
      last = new Error(`GET /api/v1/setup answered ${res.status}`);
    } catch (e) {
      if (e.message.startsWith('setup is not needed')) throw e;
      last = e;
    }
    await sleep(250);
  }
  throw new Error(`server at ${BASE} not ready: ${last?.message}`);
}

async function checkDashboardServed() {
  const res = await fetch(`${BASE}/`);
  const text = await res.text();
  if (res.ok && text.includes('<div id="root">')) return;
  throw new Error(
    `GET / did not return the dashboard (${res.status}: ${text.slice(0, 120)}).\n` +
      '  Build it with `cd web && npm run build`. If the server still does not serve web/dist, run the test\n' +
      '  through `vite preview`, which serves web/dist and proxies /api:\n' +
      '    (cd web && INFRAPILOT_URL=<server> npx vite preview --port 4173 --strictPort) &\n' +
      '    INFRAPILOT_URL=http://127.0.0.1:4173 node run.mjs',
  );
}

// ---- the flow ----------------------------------------------------------------

async function main() {
  console.log(`InfraPilot e2e against ${BASE} with ${CHROMIUM}`);
  selfTestTotp();
  await step('server is up and needs setup', waitForServer);
  await step('the dashboard is served at /', checkDashboardServed);

  const { browser, page, consoleErrors, ui } = await openBrowser();
  const { label, button, heading, nav, expectNoFormError } = ui;

  try {
    await step('open / shows the first-run setup form', async () => {
      await page.goto(`${BASE}/`);
      await heading('Welcome to InfraPilot').waitFor();
      if (!page.url().endsWith('/setup')) throw new Error(`expected /setup, at ${page.url()}`);
    });

    await step('setup refuses a wrong setup code, naming the field', async () => {
      const before = consoleErrors.length;
      await label('Setup code').fill('not-the-code');
      await label('Name').fill(ADMIN.name);
      await label('Email').fill(ADMIN.email);
      await label('Password').fill(ADMIN.password);
      await label('Confirm password').fill(ADMIN.password);
      await button('Create administrator').click();
      await page.getByText('the setup code is wrong').waitFor();
      if (!(await label('Setup code').getAttribute('aria-invalid'))) throw new Error('the setup code field is not marked');
      // The browser logs the refused request (403) it was asked to make; that one is expected.
      await sleep(300);
      for (let i = consoleErrors.length - 1; i >= before; i--) {
        if (/status of 403/.test(consoleErrors[i])) consoleErrors.splice(i, 1);
      }
    });

    await step('create the administrator with the setup code from the data directory', async () => {
      if (!SETUP_CODE) throw new Error('set E2E_SETUP_CODE (the file setup-code in the server data directory)');
      await label('Setup code').fill(SETUP_CODE);
      await label('Name').fill(ADMIN.name);
      await label('Email').fill(ADMIN.email);
      await label('Password').fill(ADMIN.password);
      await label('Confirm password').fill(ADMIN.password);
      await button('Create administrator').click();
      await heading('Sign in to InfraPilot').waitFor();
      await page.getByText('Administrator account created').waitFor();
    });

    await step('sign in with email and password', async () => {
      await label('Email').fill(ADMIN.email);
      await label('Password').fill(ADMIN.password);
      await button('Sign in').click();
      await heading('Dashboard').waitFor();
      await expectNoFormError();
      for (const item of ['Dashboard', 'Users', 'API tokens', 'Audit log', 'Profile']) {
        await nav(item).waitFor();
      }
    });

    await step('theme toggle switches and persists', async () => {
      const toggle = page.getByTestId('theme-toggle');
      const seen = new Set();
      for (let i = 0; i < 3; i++) {
        await toggle.click();
        seen.add(await page.evaluate(() => document.documentElement.dataset.theme));
      }
      if (!seen.has('light') || !seen.has('dark')) throw new Error(`themes seen: ${[...seen].join(', ')}`);
      // Three clicks go round to "system" again.
      const stored = await page.evaluate(() => localStorage.getItem('infrapilot.theme'));
      if (stored !== null) throw new Error(`expected no stored theme after a full cycle, got ${stored}`);
    });

    await step('open Profile', async () => {
      await nav('Profile').click();
      await heading('Profile').waitFor();
      await heading('Two-factor authentication').waitFor();
    });

    const secret = await step('start TOTP enrolment and read the secret', async () => {
      await button('Set up two-factor authentication').click();
      const el = page.getByTestId('totp-secret');
      await el.waitFor();
      const s = (await el.innerText()).trim();
      if (!/^[A-Z2-7=\s]{16,}$/i.test(s)) throw new Error(`secret does not look like base32: ${s}`);
      const qr = page.getByTestId('totp-qr');
      await qr.waitFor();
      const loaded = await qr.evaluate((img) => img.complete && img.naturalWidth > 0);
      if (!loaded) throw new Error('the QR code image did not load (CSP or bad data URL?)');
      return s;
    });

    const enrolStep = await step('confirm enrolment with a computed TOTP code', async () => {
      const s = timeStep();
      await label('Authentication code').fill(totp(secret, s));
      await button('Confirm and turn on').click();
      const codes = page.getByTestId('backup-codes');
      await codes.waitFor();
      // If the step rolled over while the server checked the code, be safe and
      // treat the later step as used too.
      return Math.max(s, timeStep());
    });

    await step('backup codes are shown once (10 codes)', async () => {
      const items = page.getByTestId('backup-codes').locator('li');
      const n = await items.count();
      if (n !== 10) throw new Error(`expected 10 backup codes, saw ${n}`);
      await button('I have saved these codes').click();
      await page.getByTestId('backup-codes').waitFor({ state: 'detached' });
      await page.getByText('backup codes left').waitFor();
    });

    await step('sign out', async () => {
      await button('Sign out').click();
      await heading('Sign in to InfraPilot').waitFor();
    });

    await step('sign in again: the MFA step appears', async () => {
      await label('Email').fill(ADMIN.email);
      await label('Password').fill(ADMIN.password);
      await button('Sign in').click();
      await heading('Two-factor authentication').waitFor();
      await page.getByTestId('mfa-step').waitFor();
    });

    await step('enter a fresh TOTP code (a later 30-s step than at enrolment)', async () => {
      // The server refuses a code from a time step that was already used, so
      // wait until the step after the one used to confirm the enrolment.
      let s = timeStep();
      if (s <= enrolStep) {
        const waitMs = (enrolStep + 1) * 30_000 - Date.now() + 250;
        note(`waited ${(waitMs / 1000).toFixed(1)} s for the next TOTP step`);
        await sleep(waitMs);
        s = timeStep();
      }
      await label('Authentication code').fill(totp(secret, s));
      await button('Verify').click();
      await heading('Dashboard').waitFor();
    });

    await step('Audit log lists setup.complete, mfa.enable and auth.login', async () => {
      await nav('Audit log').click();
      await heading('Audit log').waitFor();
      const table = page.getByTestId('audit-table');
      await table.waitFor();
      for (const action of ['setup.complete', 'mfa.enable', 'auth.login']) {
        await table.locator(`tr[data-action="${action}"]`).first().waitFor();
      }
      const actions = await table.locator('tr[data-action]').evaluateAll((rows) => rows.map((r) => r.dataset.action));
      note(`audit actions: ${actions.join(', ')}`);
    });

    await step('audit filter by action shows only auth.login rows', async () => {
      await label('Action').fill('auth.login');
      await button('Apply filters').click();
      const table = page.getByTestId('audit-table');
      await page.waitForFunction(() => {
        const rows = [...document.querySelectorAll('[data-testid="audit-table"] tr[data-action]')];
        return rows.length > 0 && rows.every((r) => r.getAttribute('data-action') === 'auth.login');
      });
      const n = await table.locator('tr[data-action="auth.login"]').count();
      if (n < 2) throw new Error(`expected at least 2 auth.login rows, saw ${n}`);
      await button('Reset').click();
      await table.locator('tr[data-action="setup.complete"]').waitFor();
    });

    await step('Verify chain reports OK', async () => {
      await button('Verify chain').click();
      const result = page.getByTestId('verify-result');
      await result.waitFor();
      const ok = await result.getAttribute('data-ok');
      const text = (await result.innerText()).trim();
      if (ok !== 'true' || !text.includes('Chain OK')) throw new Error(`verify result: ${text}`);
      note(text);
    });

    // ---- nodes and containers (the built-in agent on the test's Docker engine) ----

    await step(`start a compose-labelled stack "${STACK}" (web, worker) on the test engine`, async () => {
      startStack();
      note(docker('ps', '--filter', `label=com.docker.compose.project=${STACK}`, '--format', '{{.Names}} {{.State}}').replace(/\n/g, ', '));
    });

    await step('Nodes lists the built-in node "local" online', async () => {
      await nav('Nodes').click();
      await heading('Nodes').waitFor();
      const row = page.getByTestId('node-row-local');
      await until('node "local" online', async () => (await row.getAttribute('data-status')) === 'online');
      await row.getByTestId('builtin-marker').waitFor();
    });

    await step('an enrollment token shows the install one-liner once', async () => {
      await page.getByTestId('token-name').fill('e2e rollout');
      await page.getByTestId('token-labels').fill('env=e2e');
      await page.getByTestId('token-create-submit').click();
      const created = page.getByTestId('enrollment-created');
      await created.waitFor();
      const secret = (await page.getByTestId('enrollment-secret').innerText()).trim();
      const command = await page.getByTestId('install-command').inputValue();
      if (!command.includes(`${BASE}/install.sh`)) throw new Error(`one-liner without ${BASE}/install.sh: ${command}`);
      if (!command.includes(secret)) throw new Error('the one-liner does not carry the token');
      // The script the one-liner fetches is served, and the token is data for it, not code.
      const script = await (await fetch(`${BASE}/install.sh`)).text();
      if (!script.startsWith('#!')) throw new Error('/install.sh is not a script');
      await page.getByTestId('enrollment-token-row-e2e rollout').waitFor();
      note(command.replace(secret, '<token>'));
    });

    await step(`the node page groups the stack's containers with live memory`, async () => {
      await page.getByTestId('node-row-local').getByRole('link', { name: 'local', exact: true }).click();
      const stack = page.getByTestId(`stack-${STACK}`);
      await stack.waitFor();
      for (const service of ['web', 'worker']) {
        const row = stack.getByTestId(`container-row-${STACK}-${service}`);
        await until(`${STACK}-${service} running`, async () => (await row.getAttribute('data-state')) === 'running');
      }
      // Stats are sampled on the node while someone looks: the memory cell fills in.
      const web = stack.getByTestId(`container-row-${STACK}-web`);
      const memory = await until('a memory figure', async () => {
        const text = await web.locator('td.num').nth(1).innerText();
        return /MiB/.test(text) ? text : null;
      }, 20_000);
      note(`${STACK}-web memory ${memory}`);
    });

    await step('the container page shows the stored log, follows new lines live, and shows Docker\'s own log', async () => {
      await page.getByTestId(`container-row-${STACK}-web`).getByRole('link', { name: `${STACK}-web`, exact: true }).click();
      await page.getByTestId('tab-overview').waitFor();
      await page.getByTestId('tab-logs').click();
      const lines = page.getByTestId('log-line');
      await until('log lines', async () => (await lines.count()) > 0);
      const before = lastTick(await lines.allInnerTexts());
      if (before < 0) throw new Error(`no "tick" line in ${JSON.stringify(await lines.allInnerTexts())}`);
      await page.getByTestId('log-follow').click();
      await until('follow live', async () => (await page.getByTestId('log-follow-status').getAttribute('data-state')) === 'live');
      const after = await until('a newer line', async () => {
        const t = lastTick(await lines.allInnerTexts());
        return t >= before + 2 ? t : null;
      });
      const stream = await lines.last().getAttribute('data-stream');
      if (stream !== 'stdout') throw new Error(`last line marked ${stream}`);
      // The same container's log as Docker keeps it on the node.
      await page.getByTestId('log-follow').click();
      await page.getByTestId('log-source').selectOption('docker');
      const fromDocker = await until("Docker's log", async () => {
        const t = lastTick(await lines.allInnerTexts());
        return t >= after ? t : null;
      });
      await page.getByTestId('log-source').selectOption('stored');
      await until('the stored history again', async () => lastTick(await lines.allInnerTexts()) >= after);
      note(`tick ${before} stored when loaded, tick ${after} followed, tick ${fromDocker} in Docker's log`);
    });

    await step('the Logs page: stored lines of the stack, a text filter with matches marked, the volume chart, live, CSV export', async () => {
      await page.getByRole('link', { name: 'Logs', exact: true }).click();
      await page.getByTestId('logs-page').waitFor();
      const lines = page.getByTestId('log-line');
      await until('stored lines', async () => (await lines.count()) > 0, 20_000);
      await page.getByTestId('log-filters').getByLabel('Text').fill('worker tick');
      await page.getByTestId('log-filters').getByRole('button', { name: 'Apply' }).click();
      const filtered = await until('only worker lines', async () => {
        const texts = await lines.allInnerTexts();
        return texts.length > 0 && texts.every((t) => t.includes('worker tick')) ? texts : null;
      });
      if ((await lines.first().locator('mark').count()) === 0) throw new Error('the match is not marked');
      await until('the volume chart drawn', async () => (await page.getByTestId('volume-chart').locator('canvas').count()) > 0);
      const before = lastTick(filtered);
      await page.getByTestId('live-toggle').click();
      const after = await until('a newer line live', async () => {
        const t = lastTick(await lines.allInnerTexts());
        return t >= before + 2 ? t : null;
      }, 20_000);
      const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export-csv').click()]);
      const csv = readFileSync(await download.path(), 'utf8');
      const rows = csv.trim().split('\r\n');
      if (rows[0] !== '"time","node","container","container_id","project","stream","level","line"') throw new Error(`CSV header ${rows[0]}`);
      if (rows.length < 2 || !rows.slice(1).every((r) => r.includes('worker tick'))) throw new Error(`CSV rows ${rows.slice(0, 3)}`);
      await page.getByTestId('live-toggle').click();
      // Back to the container page the next steps use.
      await page.goBack();
      await page.getByTestId('tab-overview').waitFor();
      note(`tick ${before} stored, tick ${after} live; ${rows.length - 1} rows exported`);
    });

    await step('the Health page: the node\'s score and reasons, its CPU/memory/disk chart, the database and the host process', async () => {
      await page.getByRole('link', { name: 'Health', exact: true }).click();
      const card = page.getByTestId('node-health').filter({ hasText: 'local' });
      await card.waitFor();
      const score = Number(await card.getAttribute('data-score'));
      if (!(score >= 0 && score <= 100)) throw new Error(`score ${score}`);
      const reasons = await card.getByTestId('node-reasons').locator('li').count();
      if ((score === 100) !== (reasons === 0)) throw new Error(`score ${score} with ${reasons} reasons`);
      await until('the samples chart drawn', async () => (await card.getByTestId('node-chart').locator('canvas').count()) > 0, 20_000);
      const latency = await page.getByTestId('database-latency').innerText();
      if (!/^\d+\.\d\d ms$/.test(latency)) throw new Error(`database latency ${latency}`);
      await page.getByTestId('host-health').waitFor();
      await page.getByLabel('Range').selectOption('24h');
      await until('the chart redrawn for 24 h', async () => (await card.getByTestId('node-chart').locator('canvas').count()) > 0);
      await page.goBack();
      await page.getByTestId('tab-overview').waitFor();
      note(`score ${score}, ${reasons} reasons, database ${latency}`);
    });

    await step('the terminal runs a command in the container and reports its exit code', async () => {
      await page.getByTestId('tab-terminal').click();
      await page.getByTestId('terminal-connect').click();
      const status = page.getByTestId('terminal-status');
      await until('terminal connected', async () => (await status.getAttribute('data-state')) === 'connected');
      await page.getByTestId('terminal').click();
      // The shell computes the answer: seeing 42 proves input, execution and output.
      await page.keyboard.type('echo e2e-$((6*7)) $E2E_SECRET\n');
      const rows = page.locator('[data-testid="terminal"] .xterm-rows');
      await until('the command output', async () => /e2e-42 hunter2/.test(await rows.innerText()));
      await page.keyboard.type('exit 3\n');
      await until('exit code 3', async () => (await status.getAttribute('data-exit-code')) === '3');
    });

    await step('stop asks first: cancelling changes nothing, confirming stops the container', async () => {
      await page.getByRole('link', { name: 'local', exact: true }).first().click();
      const target = `${STACK}-worker`;
      const running = () => docker('inspect', '-f', '{{.State.Running}}', target);
      await page.getByTestId(`action-stop-${target}`).click();
      const dialog = page.getByTestId('confirm-dialog');
      await dialog.waitFor();
      await dialog.getByRole('button', { name: 'Cancel' }).click();
      await dialog.waitFor({ state: 'hidden' });
      if (running() !== 'true') throw new Error(`cancelling stopped ${target}`);
      await page.getByTestId(`action-stop-${target}`).click();
      await dialog.getByRole('button', { name: `Stop ${target}` }).click();
      // The dialog closes at once; the row shows the stop's progress and outcome.
      await dialog.waitFor({ state: 'hidden', timeout: 3000 });
      // Its shell is PID 1 and ignores SIGTERM: Docker kills it after the 10 s stop timeout.
      await until(`${target} stopped`, async () => running() === 'false', 30_000);
      await until('the stop reported', async () => /Stopped .*worker/.test(await page.getByTestId('action-result').innerText()));
    });

    await step('delete asks for the name; a wrong name cannot confirm, the right one removes it', async () => {
      await nav('Nodes').click();
      await page.getByRole('link', { name: 'local', exact: true }).first().click();
      const victim = `${STACK}-worker`;
      await page.getByTestId(`action-delete-${victim}`).click();
      const dialog = page.getByTestId('delete-container-dialog');
      await dialog.waitFor();
      const confirm = dialog.getByTestId('confirm-delete');
      await dialog.getByTestId('confirm-name-input').fill(`${victim}-typo`);
      if (await confirm.isEnabled()) throw new Error('a wrong name enables Delete');
      await dialog.getByTestId('confirm-name-input').fill(victim);
      await dialog.getByLabel('Force: remove it even if it is running').check();
      await confirm.click();
      await until(`${victim} gone from the page`, async () => (await page.getByTestId(`container-row-${victim}`).count()) === 0);
      const left = docker('ps', '-a', '--filter', `name=^${victim}$`, '--format', '{{.Names}}');
      if (left) throw new Error(`docker still lists ${left}`);
    });

    await step('the audit log records the exec session and the delete', async () => {
      await nav('Audit log').click();
      for (const action of ['container.exec_start', 'container.exec_end', 'container.remove']) {
        await until(action, async () => (await page.locator(`[data-testid="audit-row"][data-action="${action}"]`).count()) > 0);
      }
    });

    // ---- plugins and alerting (the server trusts the development key of scripts/build-plugins.sh
    // and lets plugins reach 127.0.0.1; a local receiver stands in for the webhook endpoint) ----
    const received = [];
    const receiver = createServer((req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
        res.end('ok');
      });
    });
    await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
    const hookUrl = `http://127.0.0.1:${receiver.address().port}/hook`;
    const crasher = `${STACK}-crasher`;
    try {
      await step('Plugins lists the signed first-party channels; enable the webhook with its grant', async () => {
        await nav('Plugins').click();
        const row = page.getByTestId('plugin-infrapilot.webhook');
        await row.waitFor();
        if (!(await row.innerText()).includes('Signed')) throw new Error('the webhook plugin is not shown as signed');
        await row.getByRole('button', { name: 'Enable Webhook' }).click();
        await page.getByTestId('grant-dialog').getByRole('button', { name: 'Grant and enable' }).click();
        await until('webhook enabled', async () => (await row.innerText()).includes('Enabled'));
      });

      await step('a webhook channel from the schema form; "Send test" delivers, signed with HMAC', async () => {
        await nav('Alert channels').click();
        await button('New channel').click();
        const dialog = page.getByTestId('channel-dialog');
        await dialog.getByLabel('Name', { exact: true }).fill('e2e hook');
        await dialog.getByLabel('URL *', { exact: true }).fill(hookUrl);
        await dialog.getByLabel('Signing secret', { exact: true }).fill('e2e-secret');
        await dialog.getByRole('button', { name: 'Create channel' }).click();
        const row = page.getByTestId('channel-e2e hook');
        await row.waitFor();
        await row.getByRole('button', { name: 'Send test to e2e hook' }).click();
        await until('test delivered', async () => (await row.getByTestId('test-result').innerText()).includes('Delivered'));
        const hit = received.at(-1);
        if (!hit) throw new Error('the receiver got nothing');
        const ts = hit.headers['x-infrapilot-timestamp'];
        const expected = `sha256=${createHmac('sha256', 'e2e-secret').update(`${ts}.${hit.body}`).digest('hex')}`;
        if (hit.headers['x-infrapilot-signature'] !== expected) throw new Error('bad HMAC signature');
        if (JSON.parse(hit.body).event !== 'alert.test') throw new Error(`unexpected payload ${hit.body}`);
      });

      await step('a crash rule notifying the channel', async () => {
        await nav('Alert rules').click();
        await button('New rule').click();
        const dialog = page.getByTestId('rule-dialog');
        await dialog.getByLabel('Name', { exact: true }).fill('crashes');
        await dialog.getByLabel('Only container (name)', { exact: true }).fill(crasher);
        await dialog.getByLabel('e2e hook', { exact: true }).check();
        await dialog.getByRole('button', { name: 'Create rule' }).click();
        await page.getByTestId('rules-table').getByText('crashes', { exact: true }).waitFor();
        await sleep(2500); // the engine takes its starting point in the event stream
      });

      await step('a container that exits 1 shows in Alert history and reaches the webhook', async () => {
        docker('run', '-d', '--name', crasher, IMAGE, 'sh', '-c', 'sleep 1; exit 1');
        await nav('Alert history').click();
        const table = page.getByTestId('history-table');
        await until('the crash in the history', async () => (await table.innerText()).includes(`${crasher} exited with code 1`), 30_000);
        await until('the delivery shown', async () => (await table.innerText()).includes('delivered'), 30_000);
        const firing = received.find((r) => r.body.includes('alert.firing'));
        if (!firing || JSON.parse(firing.body).alert.target !== crasher) throw new Error('no firing alert reached the webhook');
      });

      await step('the dashboard says what needs attention: the firing alert and the crashed container, each a link', async () => {
        await nav('Dashboard').click();
        const attention = page.getByTestId('attention');
        await attention.waitFor();
        const alerts = page.getByTestId('attention-alerts');
        await until('the firing alert counted', async () => Number(await alerts.getAttribute('data-count')) >= 1, 20_000);
        const containers = page.getByTestId('attention-containers');
        await until('the crashed container listed', async () => (await containers.innerText()).includes(crasher), 20_000);
        if ((await page.getByTestId('attention-offline').getAttribute('data-count')) !== '0') throw new Error('the built-in node shows offline');
        await containers.getByRole('link', { name: crasher }).click();
        await page.getByTestId('tab-overview').waitFor();
        note(`${await alerts.count()} alert card, crashed ${crasher} linked to its page`);
      });

      await step('Licence shows the community edition', async () => {
        await nav('Licence').click();
        await until('licence status', async () => (await page.getByTestId('license-status').innerText()).includes('community'));
      });
    } finally {
      receiver.close();
      try {
        docker('rm', '-f', crasher);
      } catch {
        /* not there */
      }
    }

    // ---- reverse proxy (the built-in agent's managed nginx, the locally built image) ----
    if (PROXY_HTTP_PORT) {
      const upstream = `${STACK}-site`;
      await step('a proxy host made with the container picker is applied and serves through nginx', async () => {
        try {
          docker('network', 'create', `${STACK}-net`);
        } catch {
          /* exists */
        }
        docker('run', '-d', '--name', upstream, '--network', `${STACK}-net`, IMAGE, 'sh', '-c',
          'mkdir -p /www && echo hello-from-e2e > /www/index.html && exec /bin/busybox httpd -f -p 80 -h /www');
        await nav('Proxy hosts').click();
        await heading('Proxy hosts').waitFor();
        await button('New proxy host').click();
        const dialog = page.getByTestId('proxy-dialog');
        await dialog.getByLabel('Domains (one per line)').fill('shop.e2e.test');
        await until('the container picker lists the upstream', async () =>
          (await dialog.getByLabel('Container', { exact: true }).innerText()).includes(upstream));
        await dialog.getByLabel('Container', { exact: true }).selectOption(upstream);
        await dialog.getByLabel('X-Frame-Options').selectOption('DENY');
        await dialog.getByRole('button', { name: 'Create and apply' }).click();
        const row = page.getByTestId('proxy-row').filter({ hasText: 'shop.e2e.test' });
        await until('applied', async () => (await row.innerText()).includes('Applied'), 30_000);
        const [status, body] = await throughNginx('shop.e2e.test');
        if (status !== 200 || body.trim() !== 'hello-from-e2e') throw new Error(`through nginx: ${status} ${body}`);
        await page.getByTestId('revisions-table').getByText('create', { exact: true }).waitFor();
      });

      await step("a host nginx refuses shows nginx's own error; the other keeps serving", async () => {
        await button('New proxy host').click();
        const dialog = page.getByTestId('proxy-dialog');
        await dialog.getByLabel('Domains (one per line)').fill('broken.e2e.test');
        await dialog.getByLabel('Send requests to').selectOption('host');
        await dialog.getByLabel('Host or IP').fill('no-such-upstream.invalid');
        await dialog.getByRole('button', { name: 'Create and apply' }).click();
        const row = page.getByTestId('proxy-row').filter({ hasText: 'broken.e2e.test' });
        await until('failed', async () => (await row.innerText()).includes('Failed'), 60_000);
        const error = await row.getByTestId('apply-error').innerText();
        if (!error.includes('host not found in upstream')) throw new Error(`error text: ${error}`);
        note(error.split('\n')[0]);
        const [status] = await throughNginx('shop.e2e.test');
        if (status !== 200) throw new Error(`shop.e2e.test answered ${status}`);
      });
    }

    if (PROXY_HTTP_PORT && PROXY_HTTPS_PORT) {
      await step('an uploaded certificate: a wrong key is refused naming the field; the host serves HTTPS with it', async () => {
        // A self-signed certificate and a stranger key, made with openssl (no shell).
        const dir = mkdtempSync(join(tmpdir(), 'e2e-cert-'));
        execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
          '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '30',
          '-subj', '/CN=secure.e2e.test', '-addext', 'subjectAltName=DNS:secure.e2e.test'], { stdio: 'ignore' });
        execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', join(dir, 'other.pem')], { stdio: 'ignore' });
        const cert = readFileSync(join(dir, 'cert.pem'), 'utf8');
        await button('Upload certificate').click();
        const dialog = page.getByTestId('certificate-dialog');
        await dialog.getByLabel('Name', { exact: true }).fill('e2e');
        await dialog.getByLabel(/^Certificate chain/).fill(cert);
        await dialog.getByLabel(/^Private key/).fill(readFileSync(join(dir, 'other.pem'), 'utf8'));
        await dialog.getByRole('button', { name: 'Upload' }).click();
        await until('the key is refused', async () => (await dialog.getByRole('alert').innerText()).includes('does not belong to the certificate'));
        if ((await dialog.getByLabel(/^Private key/).getAttribute('aria-invalid')) !== 'true') throw new Error('the key field is not marked');
        await dialog.getByLabel(/^Private key/).fill(readFileSync(join(dir, 'key.pem'), 'utf8'));
        await dialog.getByRole('button', { name: 'Upload' }).click();
        const certRow = page.getByTestId('certificate-row').filter({ hasText: 'secure.e2e.test' });
        await certRow.waitFor();

        await button('New proxy host').click();
        const form = page.getByTestId('proxy-dialog');
        await form.getByLabel('Domains (one per line)').fill('secure.e2e.test');
        await until('the container picker lists the upstream', async () =>
          (await form.getByLabel('Container', { exact: true }).innerText()).includes(`${STACK}-site`));
        await form.getByLabel('Container', { exact: true }).selectOption(`${STACK}-site`);
        await form.getByLabel('Certificate', { exact: true }).selectOption('uploaded');
        await form.getByLabel('Uploaded certificate').selectOption({ label: 'e2e (secure.e2e.test)' });
        await form.getByRole('button', { name: 'Create and apply' }).click();
        const row = page.getByTestId('proxy-row').filter({ hasText: 'secure.e2e.test' });
        await until('applied', async () => (await row.innerText()).includes('Applied'), 30_000);
        const [status, body] = await throughNginxTls('secure.e2e.test', cert);
        if (status !== 200 || body.trim() !== 'hello-from-e2e') throw new Error(`HTTPS through nginx: ${status} ${body}`);
        await until('the certificate lists its host', async () =>
          (await certRow.locator('td').nth(4).innerText()).includes('secure.e2e.test'), 15_000);
      });
    }

    await step('no browser console errors (CSP, React)', async () => {
      const relevant = relevantConsoleErrors(consoleErrors);
      if (relevant.length) throw new Error(`console errors:\n  ${relevant.join('\n  ')}`);
    });

    console.log('\ne2e: 1 passed, 0 failed');
  } catch (e) {
    await reportFailure(page, consoleErrors);
    throw e;
  } finally {
    await browser.close();
    removeStack();
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`\nE2E FAILED: ${e.message}`);
    console.log('e2e: 0 passed, 1 failed');
    process.exit(1);
  },
);
