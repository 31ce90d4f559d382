#!/usr/bin/env node
// Browser test of the SaaS onboarding (seed 002): a stranger signs up, confirms the email through
// the mailed link, creates an enrollment token, runs the one-liner (the real installer and agent
// binary, from this host), and sees the node online live; a second organisation sees none of it;
// an invitation mailed from the first organisation is accepted by another person through its link.
//
//   INFRAPILOT_URL=http://127.0.0.1:18182 E2E_SETUP_CODE=… E2E_MAILDIR=/tmp/maildir node onboarding.mjs
//
// Needs a fresh server with INFRAPILOT_EDITION=saas, its SMTP settings pointing at a real SMTP
// server that writes a maildir (test.sh runs aiosmtpd), and a Docker engine at DOCKER_HOST for the
// agent the one-liner installs. Exit 0 on success; on failure a message, exit 1 and
// out/onboarding-failure.png.

import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OPERATOR, openBrowser, relevantConsoleErrors, reportFailure, step, until } from './lib.mjs';

const BASE = (process.env.INFRAPILOT_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
const SETUP_CODE = (process.env.E2E_SETUP_CODE || '').trim();
const MAILDIR = process.env.E2E_MAILDIR || '';
const NODE_NAME = 'e2e-onboarded';

const FOUNDER = { name: 'Fay Founder', email: 'fay@acme.example', password: 'founder-password-1', org: 'Acme Ops' };
const INVITEE = { name: 'Ivo Invitee', email: 'ivo@acme.example', password: 'invitee-password-1', org: 'Ivo Solo' };

// ---- mail (aiosmtpd's maildir: one raw RFC 5322 message per file) ------------------------

/** A message's text with quoted-printable and base64 parts decoded well enough to find a link. */
function decodedMail(raw) {
  const [, ...rest] = raw.split(/\r?\n\r?\n/);
  let body = rest.join('\n\n');
  if (/^Content-Transfer-Encoding:\s*base64/im.test(raw)) {
    const b64 = body.replace(/[^A-Za-z0-9+/=]/g, '');
    body += `\n${Buffer.from(b64, 'base64').toString('utf8')}`;
  }
  if (/^Content-Transfer-Encoding:\s*quoted-printable/im.test(raw)) {
    body = body.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
  }
  return `${raw.split(/\r?\n\r?\n/)[0]}\n\n${body}`;
}

/** The link to `path#token` in the newest mail to `to`. */
async function mailedLink(to, path) {
  const pattern = new RegExp(`https?://[^\\s"<>]+${path.replace(/\//g, '\\/')}#[A-Za-z0-9_-]+`);
  return until(`a mail to ${to} with a ${path} link`, () => {
    const dir = join(MAILDIR, 'new');
    for (const file of readdirSync(dir)) {
      const text = decodedMail(readFileSync(join(dir, file), 'utf8'));
      if (!new RegExp(`^To:.*${to.replace(/\./g, '\\.')}`, 'im').test(text)) continue;
      const link = text.match(pattern);
      if (link) return link[0];
    }
    return null;
  }, 20_000);
}

// ---- the one-liner ------------------------------------------------------------------

/** Runs the dashboard's install line as a user would paste it, plus options to keep the agent in
 *  the foreground under a temp dir. `sudo` is a shim (root here; the line may meet no sudo). */
function runOneLiner(line) {
  const dir = mkdtempSync(join(tmpdir(), 'e2e-onboard-'));
  const shims = join(dir, 'shims');
  mkdirSync(shims);
  writeFileSync(join(shims, 'sudo'), '#!/bin/sh\nexec env "$@"\n');
  chmodSync(join(shims, 'sudo'), 0o755);
  const extra = ` -s -- --foreground --name ${NODE_NAME} --prefix ${dir}/bin --state-dir ${dir}/state --config-dir ${dir}/etc`;
  const child = spawn('bash', ['-o', 'pipefail', '-c', line + extra], {
    env: { ...process.env, PATH: `${shims}:${process.env.PATH}` },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let log = '';
  child.stdout.on('data', (c) => (log += c));
  child.stderr.on('data', (c) => (log += c));
  return {
    log: () => log,
    exited: () => child.exitCode !== null,
    stop: () => {
      try {
        process.kill(-child.pid, 'SIGTERM');
      } catch {
        /* gone */
      }
    },
  };
}

// ---- the flow -----------------------------------------------------------------------

async function main() {
  if (!MAILDIR) throw new Error('set E2E_MAILDIR to the maildir of the SMTP server the host mails through');
  await step('the host runs the SaaS edition and its operator is set up', async () => {
    const status = await until('the server', async () => (await fetch(`${BASE}/api/v1/setup`)).json());
    if (!status.signup_open) throw new Error(`sign-up is not open: ${JSON.stringify(status)}; start the server with INFRAPILOT_EDITION=saas`);
    if (status.needed) {
      const res = await fetch(`${BASE}/api/v1/setup`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ setup_code: SETUP_CODE, ...OPERATOR }),
      });
      if (res.status !== 201) throw new Error(`setup answered ${res.status}: ${await res.text()}`);
    }
  });

  const { browser, page, consoleErrors, ui } = await openBrowser();
  const { label, button, heading, nav, expectNoFormError } = ui;
  const switcher = page.getByTestId('org-switcher');
  let agent = null;

  async function signUp(person) {
    await page.goto(`${BASE}/login`);
    await page.getByTestId('signup-link').click();
    await heading('Create your account').waitFor();
    await label('Your name').fill(person.name);
    await label('Email').fill(person.email);
    await label('Organisation').fill(person.org);
    await label('Password').fill(person.password);
    await label('Confirm password').fill(person.password);
    await button('Create account').click();
    await page.getByTestId('signup-done').waitFor();
    const text = await page.getByTestId('signup-done').innerText();
    if (!text.includes('We sent a link')) throw new Error(`the confirmation was not mailed: ${text}`);
  }

  async function verifyThroughMail(person) {
    const link = await mailedLink(person.email, '/signup/verify');
    if (!link.startsWith(`${BASE}/signup/verify#`)) throw new Error(`the mailed link is not this host's page: ${link}`);
    await page.goto(link);
    await page.getByTestId('login-form').waitFor();
    const form = await page.getByTestId('login-form').innerText();
    if (!form.includes('Your email is confirmed')) throw new Error(`no confirmation notice: ${form}`);
    return link;
  }

  async function signIn(person) {
    await label('Email').fill(person.email);
    await label('Password').fill(person.password);
    await button('Sign in').click();
    await page.getByTestId('whoami').waitFor();
  }

  async function signOut() {
    await button('Sign out').click();
    await page.getByTestId('login-form').waitFor();
  }

  /** The rows of the Nodes page once it has loaded (not its "Loading…" row); with `empty`, the
   *  page must say the organisation has no node. */
  async function listedNodes({ empty = false } = {}) {
    await nav('Nodes').click();
    await heading('Nodes').waitFor();
    const rows = page.locator('main table').first().locator('tbody tr');
    await until('the nodes list to load', async () => {
      const texts = await rows.allInnerTexts();
      return texts.length > 0 && !texts.some((t) => t.includes('Loading'));
    });
    if (empty) await page.getByText('No nodes yet.').waitFor();
    return rows.allInnerTexts();
  }

  /** Runs `fn`, which expects refusals: the console errors Chromium logs for them are dropped. */
  async function expectingRefusals(fn) {
    const before = consoleErrors.length;
    const r = await fn();
    consoleErrors.splice(before).filter((t) => !/status of 4(01|03|04|10)/.test(t)).forEach((t) => consoleErrors.push(t));
    return r;
  }

  try {
    await step('a stranger signs up from the sign-in page; the confirmation link is mailed', () => signUp(FOUNDER));

    await step('signing in before confirming is refused: verify the email first', () =>
      expectingRefusals(async () => {
        await page.goto(`${BASE}/login`);
        await label('Email').fill(FOUNDER.email);
        await label('Password').fill(FOUNDER.password);
        await button('Sign in').click();
        await page.getByTestId('form-error').waitFor();
        const err = await page.getByTestId('form-error').innerText();
        if (!/verify your email/i.test(err)) throw new Error(`unexpected error: ${err}`);
      }),
    );

    const verifyLink = await step('the mailed link (received by aiosmtpd) confirms the email', () => verifyThroughMail(FOUNDER));

    await step('the link works once: opened again it is refused', () =>
      expectingRefusals(async () => {
        await page.goto(verifyLink);
        await page.getByTestId('form-error').waitFor();
        const err = await page.getByTestId('form-error').innerText();
        if (!/used, expired or is wrong/.test(err)) throw new Error(`unexpected error: ${err}`);
        await page.goto(`${BASE}/login`);
      }),
    );

    await step('sign in: the dashboard of the new organisation says it has no node yet', async () => {
      await signIn(FOUNDER);
      await page.getByTestId('get-started').waitFor();
      if ((await switcher.locator('option:checked').innerText()) !== FOUNDER.org) throw new Error('the switcher does not show the new organisation');
    });

    const line = await step('onboarding: create an enrollment token and read its one-liner', async () => {
      await page.getByTestId('get-started').click();
      await page.getByTestId('onboarding-steps').waitFor();
      await page.getByRole('link', { name: 'Add a node', exact: true }).click();
      await page.waitForURL(`${BASE}/onboarding/install`);
      await button('Create token and show the command').click();
      const box = page.getByTestId('install-command');
      await box.waitFor();
      const value = await box.inputValue();
      if (!value.startsWith('curl ') || !value.includes(`${BASE}/install.sh`) || !value.includes("INFRAPILOT_AGENT_TOKEN='ipe_")) {
        throw new Error(`not a one-liner for this host: ${value}`);
      }
      await expectNoFormError();
      return value;
    });

    await step('run the one-liner (installer, agent binary and checksum from this host): the page shows the node online', async () => {
      agent = runOneLiner(line);
      try {
        await page.getByTestId('onboarding-online').waitFor({ timeout: 60_000 });
      } catch (e) {
        throw new Error(`${e.message}\ninstaller/agent output:\n${agent.log()}`);
      }
      const text = await page.getByTestId('onboarding-online').innerText();
      if (!text.includes(NODE_NAME)) throw new Error(`another node came online: ${text}`);
    });

    await step('the Nodes page lists it online', async () => {
      const rows = await listedNodes();
      if (!rows.some((r) => r.includes(NODE_NAME) && r.includes('online'))) throw new Error(`nodes: ${rows.join(' | ')}`);
    });

    await step('a second organisation, switched to, sees none of it', async () => {
      await nav('Organisation').click();
      await page.getByTestId('org-new').click();
      const dialog = page.getByTestId('org-create-dialog');
      await dialog.getByLabel('Name', { exact: true }).fill('Acme Lab');
      await dialog.getByRole('button', { name: 'Create organisation' }).click();
      await page.getByTestId('onboarding-steps').waitFor();
      await until('the switcher on the new organisation', async () => (await switcher.locator('option:checked').innerText()) === 'Acme Lab');
      const rows = await listedNodes({ empty: true });
      if (rows.some((r) => r.includes(NODE_NAME))) throw new Error(`the other organisation's node is listed: ${rows.join(' | ')}`);
    });

    await step('switching back shows the node again', async () => {
      await switcher.selectOption({ label: FOUNDER.org });
      await until('the switch', async () => (await switcher.locator('option:checked').innerText()) === FOUNDER.org);
      const rows = await listedNodes();
      if (!rows.some((r) => r.includes(NODE_NAME))) throw new Error(`nodes: ${rows.join(' | ')}`);
    });

    const shownLink = await step('invite a viewer: mailed, and the link shown once', async () => {
      await nav('Organisation').click();
      const form = page.getByTestId('invite-form');
      await form.getByLabel('Email', { exact: true }).fill(INVITEE.email);
      await form.getByLabel('Role', { exact: true }).selectOption('viewer');
      await button('Send invitation').click();
      const sent = page.getByTestId('invitation-sent');
      await sent.waitFor();
      if (!(await sent.innerText()).includes('Invitation mailed to')) throw new Error(`not mailed: ${await sent.innerText()}`);
      const link = await page.getByTestId('invitation-link').innerText();
      const mailed = await mailedLink(INVITEE.email, '/invitations/accept');
      if (mailed !== link) throw new Error(`the mail's link ${mailed} is not the one shown (${link})`);
      const rows = await page.getByTestId('invitations-table').locator('tbody tr').allInnerTexts();
      if (!rows.some((r) => r.includes(INVITEE.email))) throw new Error(`open invitations: ${rows.join(' | ')}`);
      return link;
    });

    await step('the invitee signs up on their own and confirms the email', async () => {
      await signOut();
      await signUp(INVITEE);
      await verifyThroughMail(INVITEE);
    });

    await step('the invitation link asks to sign in first, then comes back and joins', async () => {
      await page.goto(shownLink);
      await page.getByTestId('login-form').waitFor();
      if (!(await page.getByTestId('login-form').innerText()).includes('accept the invitation')) throw new Error('no notice about the invitation');
      await signIn(INVITEE);
      await page.getByTestId('accept-invitation').waitFor();
      await button('Accept the invitation').click();
      await until('the switch to the joined organisation', async () => (await switcher.locator('option:checked').innerText()) === FOUNDER.org);
      const names = await switcher.locator('option').allInnerTexts();
      if (!names.includes(INVITEE.org) || !names.includes(FOUNDER.org)) throw new Error(`organisations: ${names.join(', ')}`);
    });

    await step("as a viewer of the founder's organisation: the node is listed, members are read-only", async () => {
      const rows = await listedNodes();
      if (!rows.some((r) => r.includes(NODE_NAME))) throw new Error(`nodes: ${rows.join(' | ')}`);
      await nav('Organisation').click();
      await page.getByTestId('members-table').getByText(INVITEE.email).waitFor();
      const members = await page.getByTestId('members-table').locator('tbody tr').allInnerTexts();
      if (!members.some((r) => r.includes(FOUNDER.email)) || !members.some((r) => r.includes(INVITEE.email))) {
        throw new Error(`members: ${members.join(' | ')}`);
      }
      if (await page.getByTestId('member-role').count()) throw new Error('a viewer is offered role changes');
      if (await page.getByTestId('invite-form').count()) throw new Error('a viewer is offered invitations');
    });

    await step("the invitee's own organisation sees none of it", async () => {
      await switcher.selectOption({ label: INVITEE.org });
      await until('the switch', async () => (await switcher.locator('option:checked').innerText()) === INVITEE.org);
      const rows = await listedNodes({ empty: true });
      if (rows.some((r) => r.includes(NODE_NAME))) throw new Error(`nodes: ${rows.join(' | ')}`);
    });

    await step('the same link cannot be used twice', () =>
      expectingRefusals(async () => {
        await page.goto(shownLink);
        await button('Accept the invitation').click();
        await page.getByTestId('form-error').waitFor();
        const err = await page.getByTestId('form-error').innerText();
        if (!/not valid: it was used or revoked/.test(err)) throw new Error(`unexpected error: ${err}`);
      }),
    );

    await step('no browser console errors (CSP, React)', async () => {
      const relevant = relevantConsoleErrors(consoleErrors);
      if (relevant.length) throw new Error(`console errors:\n  ${relevant.join('\n  ')}`);
    });

    console.log('\ne2e onboarding: 1 passed, 0 failed');
  } catch (e) {
    await reportFailure(page, consoleErrors, 'onboarding-failure.png');
    if (agent) console.error(`installer/agent output:\n${agent.log()}`);
    throw e;
  } finally {
    agent?.stop();
    await browser.close();
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`\nE2E ONBOARDING FAILED: ${e.message}`);
    console.log('e2e onboarding: 0 passed, 1 failed');
    process.exit(1);
  },
);
