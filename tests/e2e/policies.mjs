#!/usr/bin/env node
// Browser test of policies (issue 18) against an enterprise host with a licence carrying the
// `policies` feature, its built-in agent and a real Docker engine: create a container from the
// node page's form (a root one), turn on the `no_root_containers` template in warn and see the
// warning on a restart, switch it to block and see the refusal, then both decisions on the
// violations page.
//
//   E2E_SETUP_CODE=… E2E_LICENSE=… INFRAPILOT_URL=http://127.0.0.1:18183 node policies.mjs
//
// Exit 0 on success; on failure exit 1 and out/policies-failure.png.

import { openBrowser, relevantConsoleErrors, reportFailure, step, until } from './lib.mjs';

const BASE = (process.env.INFRAPILOT_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
const ADMIN = { email: 'policy-admin@example.com', password: 'policy admin password', name: 'Policy Admin' };
const CONTAINER = `e2e-policy-${Date.now().toString(36)}`;

async function api(method, path, token, body) {
  const res = await fetch(`${BASE}/api/v1${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  const json = text ? JSON.parse(text) : null;
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return json;
}

async function main() {
  const token = await step('set up the administrator, the licence and the templates engine (API)', async () => {
    await until('the server', async () => (await fetch(`${BASE}/readyz`)).ok, 30_000);
    await api('POST', '/setup', null, { setup_code: process.env.E2E_SETUP_CODE, ...ADMIN });
    const t = (await api('POST', '/auth/login', null, { email: ADMIN.email, password: ADMIN.password })).access_token;
    await api('PUT', '/license', t, { license: process.env.E2E_LICENSE });
    await api('POST', '/plugins/infrapilot.policy-templates/enable', t);
    return t;
  });
  const agent = await step('the built-in node is online', () =>
    until('an online node', async () => (await api('GET', '/agents', token)).find((a) => a.status === 'online')?.id, 30_000),
  );

  const { browser, page, consoleErrors, ui } = await openBrowser();
  const { label, button, heading, nav } = ui;
  try {
    await step('sign in', async () => {
      await page.goto(`${BASE}/login`);
      await label('Email').fill(ADMIN.email);
      await label('Password').fill(ADMIN.password);
      await button('Sign in').click();
      await heading('Dashboard').waitFor();
      await nav('Policies').waitFor();
    });

    await step('create a container from the node page’s form', async () => {
      await page.goto(`${BASE}/nodes/${agent}`);
      await button('New container').click();
      const dialog = page.getByTestId('create-container-dialog');
      await dialog.getByLabel('Image', { exact: true }).fill('infrapilot-test/busybox:latest');
      await dialog.getByLabel('Name', { exact: true }).fill(CONTAINER);
      await dialog.getByLabel('Command (one argument per line)').fill('/bin/sleep\n3600');
      await dialog.getByLabel('Labels (key=value per line)').fill('team=e2e');
      await button('Create container').click();
      await page.getByTestId('action-result').getByText(`Created ${CONTAINER}`).waitFor({ timeout: 60_000 });
      await page.getByRole('link', { name: CONTAINER, exact: true }).waitFor();
    });

    await step('turn on “No root containers” in warn', async () => {
      await nav('Policies').click();
      await heading('Policies').waitFor();
      await page.getByRole('link', { name: 'New policy' }).click();
      await label('Name').fill('No root');
      await label('Type').selectOption('no_root_containers');
      await label('When it finds something').selectOption('warn');
      await button('Create policy').click();
      await heading('Policies').waitFor();
      await page.getByTestId('policies-table').getByRole('link', { name: 'No root', exact: true }).waitFor();
    });

    await step('a restart goes ahead, with the warning shown', async () => {
      await page.goto(`${BASE}/nodes/${agent}`);
      await button(`Restart ${CONTAINER}`).click();
      await page.getByTestId('confirm-dialog').getByRole('button', { name: `Restart ${CONTAINER}`, exact: true }).click();
      const result = page.getByTestId('action-result');
      await result.getByText('Policy warning').waitFor({ timeout: 30_000 });
      const text = await result.innerText();
      if (!/Restarted/.test(text) || !/runs as root/.test(text)) throw new Error(`unexpected outcome: ${text}`);
    });

    await step('switch the policy to block', async () => {
      await nav('Policies').click();
      await page.getByRole('link', { name: 'No root', exact: true }).click();
      await heading('Policy No root').waitFor();
      await label('When it finds something').selectOption('block');
      await button('Save policy').click();
      await heading('Policies').waitFor();
      await page.getByTestId('policies-table').locator('.badge', { hasText: 'block' }).waitFor();
    });

    await step('the same restart is refused, naming the policy', async () => {
      await page.goto(`${BASE}/nodes/${agent}`);
      await button(`Restart ${CONTAINER}`).click();
      await page.getByTestId('confirm-dialog').getByRole('button', { name: `Restart ${CONTAINER}`, exact: true }).click();
      const result = page.getByTestId('action-result');
      await result.getByText('refused by policy No root').waitFor({ timeout: 30_000 });
    });

    await step('both decisions are on the violations page', async () => {
      await page.goto(`${BASE}/policies/violations`);
      await heading('Policy violations').waitFor();
      const table = page.getByTestId('violations-table');
      await table.getByText('container.restart').first().waitFor();
      for (const decision of ['block', 'warn']) {
        await table.locator('.badge', { hasText: decision }).first().waitFor();
      }
      await label('Decision').selectOption('block');
      await until('only blocked rows', async () => {
        const badges = await table.locator('tbody .badge').allInnerTexts();
        return badges.length > 0 && badges.every((b) => b === 'block');
      });
    });

    const errors = relevantConsoleErrors(consoleErrors).filter((e) => !/status of 403/.test(e));
    if (errors.length) throw new Error(`browser console errors: ${errors.join(' | ')}`);
  } catch (e) {
    await reportFailure(page, consoleErrors, 'policies-failure.png');
    throw e;
  } finally {
    await browser.close();
    await api('POST', `/agents/${agent}/containers/${CONTAINER}/stop`, token, { timeout_seconds: 1 }).catch(() => {});
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e.message);
    process.exit(1);
  },
);
