#!/usr/bin/env node
// Browser test of single sign-on with OpenID Connect against a real OpenID Provider (npm
// oidc-provider, started here on loopback): the OIDC plugin (a WebAssembly component, run by the
// host) configured by the host operator for the default organisation, the login page's button,
// the provider's own login and consent pages, the session in the dashboard; then what must fail:
// a replayed callback, a tampered ID token, an authorization whose PKCE challenge was swapped, an
// ID token for another nonce; and a group taken away at the provider takes the role away at the
// next login. Then directory sign-in: a real OpenLDAP (tests/peers/start-slapd.sh) behind the LDAP
// plugin, the login page's username and password form, a wrong password refused. Then SAML: a
// real identity provider (pysaml2, tests/peers/start-saml-idp.sh) behind the SAML plugin, its
// button, the IdP's signed answer posted back by the browser.
//
//   INFRAPILOT_URL=http://127.0.0.1:18182 node sso.mjs
//
// Runs after onboarding.mjs against the same SaaS host (its operator account, made there), which
// lets plugins reach 127.0.0.1 (INFRAPILOT_PLUGIN_EGRESS_ALLOW). Between the host and the provider
// sits a proxy of this script's (the provider's issuer URL is the proxy's), which can tamper with
// what passes: that is how the forged answers are made. Exit 0 on success; on failure exit 1 and
// out/sso-failure.png.

import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { createServer, request as httpRequest } from 'node:http';
import Provider from 'oidc-provider';
import { OPERATOR, openBrowser, relevantConsoleErrors, reportFailure, step, until } from './lib.mjs';

const BASE = (process.env.INFRAPILOT_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');

// The provider's people; the test changes their groups between logins.
const ACCOUNTS = {
  alice: { email: 'alice@idp.example', email_verified: true, name: 'Alice Idp', groups: ['admins', 'devs'] },
  // Too many groups for a token: a distributed claim, as Entra ID's group overage sends it.
  carl: {
    email: 'carl@idp.example',
    email_verified: true,
    name: 'Carl Overage',
    _claim_names: { groups: 'src1' },
    _claim_sources: { src1: { endpoint: 'https://graph.windows.net/tenant/users/carl/getMemberObjects' } },
  },
};

// ---- the directory --------------------------------------------------------------------------

function startDirectory() {
  const dir = execFileSync('bash', [new URL('../peers/start-slapd.sh', import.meta.url).pathname], {
    stdio: ['ignore', 'pipe', 'ignore'],
  })
    .toString()
    .trim();
  const env = readFileSync(`${dir}/env`, 'utf8');
  const port = /LDAP_PORT=(\d+)/.exec(env)[1];
  return {
    url: `ldap://127.0.0.1:${port}`,
    caPem: readFileSync(`${dir}/ca.pem`, 'utf8'),
    stop() {
      try {
        process.kill(Number(readFileSync(`${dir}/slapd.pid`, 'utf8').trim()));
      } catch {
        // gone already
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---- Microsoft Graph (a stand-in on loopback: graph.microsoft.com is not reachable) ----------

/** POST /v1.0/me/getMemberObjects as Graph documents it: the caller's group ids in `value`. */
async function startGraph() {
  const calls = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      calls.push({ url: req.url, authorization: req.headers.authorization ?? '', body });
      if (req.method !== 'POST' || req.url !== '/v1.0/me/getMemberObjects' || !req.headers.authorization) {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { code: 'InvalidAuthenticationToken' } }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ '@odata.context': 'https://graph.microsoft.com/v1.0/$metadata#Collection(Edm.String)', value: ['admins', 'devs'] }));
    });
  });
  const port = await listen(server);
  return { url: `http://127.0.0.1:${port}`, calls, stop: () => server.close() };
}

// ---- the SAML identity provider ----------------------------------------------------------------

function startSamlIdp(spEntityId, acsUrl, again) {
  const env = again ? { ...process.env, IDP_DIR: again.dir, IDP_PORT: String(again.port) } : process.env;
  const dir = execFileSync('bash', [new URL('../peers/start-saml-idp.sh', import.meta.url).pathname, spEntityId, acsUrl], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env,
  })
    .toString()
    .trim();
  const vars = readFileSync(`${dir}/env`, 'utf8');
  const port = Number(/IDP_PORT=(\d+)/.exec(vars)[1]);
  const pid = Number(/IDP_PID=(\d+)/.exec(vars)[1]);
  return {
    dir,
    port,
    stop() {
      try {
        process.kill(pid);
      } catch {
        // gone already
      }
    },
  };
}

// ---- the OpenID Provider behind a tampering proxy -------------------------------------------

const listen = (server) =>
  new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));

/** What the proxy does to the next exchanges: `null`, or a mode. */
let tamper = null;

function flipSignature(jwt) {
  const [h, p, s] = jwt.split('.');
  const bytes = Buffer.from(s, 'base64url');
  bytes[bytes.length - 1] ^= 0x01;
  return `${h}.${p}.${bytes.toString('base64url')}`;
}

/** The proxy now (its URL is the issuer); the provider behind it once the host's callback URL
 *  for the provider is known (`startOp`). */
async function startProvider() {
  const proxy = createServer();
  const proxyPort = await listen(proxy);
  const issuer = `http://127.0.0.1:${proxyPort}`;
  let opPort = 0;
  let op = null;
  async function startOp(callbackUrl) {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'e2e-rs256', use: 'sig', alg: 'RS256' };
    const provider = new Provider(issuer, {
      clients: [
        {
          client_id: 'infrapilot',
          token_endpoint_auth_method: 'none',
          redirect_uris: [callbackUrl],
          response_types: ['code'],
          grant_types: ['authorization_code'],
        },
      ],
      pkce: { required: () => true },
      jwks: { keys: [jwk] },
      cookies: { keys: [randomBytes(32).toString('hex')] },
      scopes: ['openid', 'email', 'profile', 'groups'],
      claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], groups: ['groups'] },
      conformIdTokenClaims: false,
      features: { devInteractions: { enabled: true } },
      findAccount: async (ctx, id) =>
        ACCOUNTS[id] && { accountId: id, claims: async () => ({ sub: id, ...ACCOUNTS[id] }) },
    });
    op = createServer(provider.callback());
    opPort = await listen(op);
  }

  // Everything passes through; in a tamper mode one thing is changed on its way.
  proxy.on('request', (req, res) => {
    let path = req.url;
    if (req.method === 'GET' && path.startsWith('/auth?')) {
      const url = new URL(path, issuer);
      if (tamper === 'challenge') url.searchParams.set('code_challenge', 'A'.repeat(43));
      if (tamper === 'nonce') url.searchParams.set('nonce', 'not-the-host-nonce');
      path = url.pathname + url.search;
    }
    const upstream = httpRequest(
      { host: '127.0.0.1', port: opPort, method: req.method, path, headers: req.headers },
      (answer) => {
        const chunks = [];
        answer.on('data', (c) => chunks.push(c));
        answer.on('end', () => {
          let body = Buffer.concat(chunks);
          if (tamper === 'signature' && req.method === 'POST' && req.url === '/token' && answer.statusCode === 200) {
            const tokens = JSON.parse(body.toString('utf8'));
            tokens.id_token = flipSignature(tokens.id_token);
            body = Buffer.from(JSON.stringify(tokens));
          }
          const headers = { ...answer.headers, 'content-length': String(body.length) };
          res.writeHead(answer.statusCode, headers);
          res.end(body);
        });
      },
    );
    upstream.on('error', (e) => {
      res.writeHead(502);
      res.end(String(e));
    });
    req.pipe(upstream);
  });
  return {
    issuer,
    startOp,
    stop: () => {
      proxy.close();
      op?.close();
    },
  };
}

// ---- the host's API (the operator's set-up) ----------------------------------------------------

async function api(method, path, token, body) {
  const res = await fetch(`${BASE}/api/v1${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

// ---- the flow -----------------------------------------------------------------------------------

async function main() {
  const op = await step('a proxy on loopback for the OpenID Provider (its URL is the issuer)', startProvider);
  const directory = await step('an OpenLDAP directory on loopback (StartTLS, memberOf)', startDirectory);
  const { browser, page, consoleErrors, ui } = await openBrowser();
  const { label, button } = ui;
  // Each callback as the browser sent it: its URL and the login cookie it carried.
  const callbacks = [];
  page.on('request', async (r) => {
    if (r.url().startsWith(`${BASE}/api/v1/auth/sso/`) && new URL(r.url()).pathname.endsWith('/callback')) {
      callbacks.push({ url: r.url(), cookie: (await r.allHeaders()).cookie ?? '' });
    }
  });

  /** From the sign-in page through the provider's login and consent; where the host lands. */
  async function ssoLogin(user = 'alice') {
    await page.goto(`${BASE}/login`);
    const before = page.url();
    await page.getByRole('link', { name: 'Sign in with Test OP' }).click();
    // To the provider (or, with its session alive, straight back to the host).
    await page.waitForURL((url) => url.href !== before);
    if (page.url().startsWith(op.issuer)) {
      await page.locator('input[name=login]').fill(user);
      await page.locator('input[name=password]').fill('any password');
      await page.locator('button[type=submit]').click();
      await page.waitForURL((url) => url.href.startsWith(op.issuer) && url.pathname.startsWith('/interaction/'));
      // Consent (the first time for the client) or straight back.
      const consent = page.locator('button[type=submit]');
      if (await consent.count()) await consent.click();
    }
    await page.waitForURL(
      (url) => url.href.startsWith(BASE) && !url.pathname.startsWith('/api/') && url.pathname !== '/login/sso',
      { timeout: 15_000 },
    );
    await until('the dashboard or the sign-in page to settle', async () =>
      (await page.getByTestId('whoami').count()) > 0 || (await page.getByTestId('login-form').count()) > 0,
    );
  }

  async function ssoError() {
    const form = page.getByTestId('login-form');
    await form.waitFor();
    const err = page.getByTestId('form-error');
    await err.waitFor();
    return err.innerText();
  }

  async function signOut() {
    await button('Sign out').click();
    await page.getByTestId('login-form').waitFor();
  }

  let samlIdp = null;
  let graph = null;
  try {
    const { token: operator, provider: oidcProvider } = await step('the host operator enables the OIDC plugin and adds the provider with its group mapping', async () => {
      const login = await api('POST', '/auth/login', null, { email: OPERATOR.email, password: OPERATOR.password });
      if (login.status !== 200) throw new Error(`operator sign-in: ${login.status} ${JSON.stringify(login.body)}`);
      const token = login.body.access_token;
      const enabled = await api('POST', '/plugins/infrapilot.oidc/enable', token);
      if (enabled.status !== 200) throw new Error(`enable: ${enabled.status} ${JSON.stringify(enabled.body)}`);
      const bad = await api('POST', '/sso/providers', token, {
        plugin: 'infrapilot.oidc',
        name: 'Broken',
        settings: { issuer: 'http://idp.example', client_id: 'x' },
      });
      if (bad.status !== 400 || bad.body.error.field !== 'settings.issuer') throw new Error(`plain http issuer: ${JSON.stringify(bad.body)}`);
      const created = await api('POST', '/sso/providers', token, {
        plugin: 'infrapilot.oidc',
        name: 'Test OP',
        settings: { preset: 'generic', issuer: op.issuer, client_id: 'infrapilot', scopes: 'openid email profile groups' },
        group_roles: [
          { group: 'admins', role: 'admin' },
          { group: 'devs', role: 'viewer' },
        ],
      });
      if (created.status !== 201) throw new Error(`provider: ${created.status} ${JSON.stringify(created.body)}`);
      if (created.body.callback_url !== `${BASE}/api/v1/auth/sso/${created.body.id}/callback`) {
        throw new Error(`callback URL ${created.body.callback_url}`);
      }
      // The provider's client is registered with exactly that redirect URI.
      await op.startOp(created.body.callback_url);
      return { token, provider: created.body.id };
    });

    await step('the sign-in page offers the provider; its login and consent lead back signed in, an admin through "admins"', async () => {
      await ssoLogin();
      const who = await page.getByTestId('whoami').innerText();
      if (!who.includes('Alice Idp') || !who.includes('Admin')) throw new Error(`signed in as ${who}`);
    });

    await step('the callback replayed (same browser, same cookie, same answer) is refused', async () => {
      const first = callbacks.at(-1);
      if (!first || !first.url.includes('code=')) throw new Error(`no callback seen: ${JSON.stringify(callbacks)}`);
      await signOut();
      // The exchange made the browser forget the login: put its cookie back, as a replay would.
      const value = first.cookie
        .split('; ')
        .find((c) => c.startsWith('infrapilot_sso='))
        ?.slice('infrapilot_sso='.length);
      if (!value) throw new Error(`the callback carried no login cookie: ${first.cookie}`);
      const { hostname } = new URL(BASE);
      const replayed = { name: 'infrapilot_sso', value, domain: hostname, path: '/api/v1/auth/sso' };
      await page.context().addCookies([replayed]);
      await page.goto(first.url);
      const err = await ssoError();
      if (!/used already|expired/.test(err)) throw new Error(`unexpected: ${err}`);
      await page.context().clearCookies();
    });

    await step('a tampered ID token (one bit of its signature) is refused', async () => {
      tamper = 'signature';
      try {
        await ssoLogin();
      } finally {
        tamper = null;
      }
      const err = await ssoError();
      if (!/ID token does not hold/i.test(err)) throw new Error(`unexpected: ${err}`);
    });

    await step('an authorization with another PKCE challenge: the verifier does not match, the code is refused', async () => {
      tamper = 'challenge';
      try {
        await ssoLogin();
      } finally {
        tamper = null;
      }
      const err = await ssoError();
      if (!/refused the code/i.test(err)) throw new Error(`unexpected: ${err}`);
    });

    await step('an ID token for another nonce is refused', async () => {
      tamper = 'nonce';
      try {
        await ssoLogin();
      } finally {
        tamper = null;
      }
      const err = await ssoError();
      if (!/nonce/i.test(err)) throw new Error(`unexpected: ${err}`);
    });

    await step('"admins" removed at the provider: the next login is a viewer', async () => {
      ACCOUNTS.alice.groups = ['devs'];
      await ssoLogin();
      const who = await page.getByTestId('whoami').innerText();
      if (!who.includes('Viewer')) throw new Error(`signed in as ${who}`);
      await signOut();
    });

    await step('group overage: the ID token points elsewhere for the groups; Microsoft Graph\'s getMemberObjects (a stand-in on loopback) gives them, an admin', async () => {
      graph = await startGraph();
      const r = await api('PATCH', `/sso/providers/${oidcProvider}`, operator, {
        settings: { preset: 'generic', issuer: op.issuer, client_id: 'infrapilot', scopes: 'openid email profile groups', graph_url: graph.url },
      });
      if (r.status !== 200) throw new Error(`provider: ${r.status} ${JSON.stringify(r.body)}`);
      // A new person at the provider: its session (alice's) ends first.
      await page.context().clearCookies();
      await ssoLogin('carl');
      const who = await page.getByTestId('whoami').innerText();
      if (!who.includes('Carl Overage') || !who.includes('Admin')) throw new Error(`signed in as ${who}`);
      if (!graph.calls.some((c) => c.authorization.startsWith('Bearer '))) throw new Error('Graph was not asked with the access token');
      await signOut();
    });

    let ldapProvider = '';
    await step('the operator adds the LDAP directory; bob signs in on the form with his directory password, an operator through "devs"', async () => {
      const enabled = await api('POST', '/plugins/infrapilot.ldap/enable', operator);
      if (enabled.status !== 200) throw new Error(`enable: ${enabled.status} ${JSON.stringify(enabled.body)}`);
      const created = await api('POST', '/sso/providers', operator, {
        plugin: 'infrapilot.ldap',
        name: 'Corp directory',
        settings: {
          url: directory.url,
          ca_pem: directory.caPem,
          bind_dn: 'cn=reader,ou=services,dc=example,dc=test',
          bind_password: 'readerpw',
          user_base: 'ou=people,dc=example,dc=test',
          group_base: 'ou=groups,dc=example,dc=test',
          emails_verified: true,
        },
        group_roles: [{ group: 'devs', role: 'operator' }],
      });
      if (created.status !== 201) throw new Error(`provider: ${created.status} ${JSON.stringify(created.body)}`);
      await page.goto(`${BASE}/login`);
      await button('Sign in with Corp directory').click();
      const form = page.getByTestId('directory-form');
      await form.waitFor();
      await label('Username').fill('bob');
      await label('Password').fill('wrong');
      await form.locator('button[type=submit]').click();
      const err = page.getByTestId('form-error');
      await err.waitFor();
      if (!/wrong username or password/i.test(await err.innerText())) throw new Error(`unexpected: ${await err.innerText()}`);
      await label('Password').fill('bobpw');
      await form.locator('button[type=submit]').click();
      await page.getByTestId('whoami').waitFor({ timeout: 15_000 });
      const who = await page.getByTestId('whoami').innerText();
      if (!who.includes('Bob Example') || !who.includes('Operator')) throw new Error(`signed in as ${who}`);
      await signOut();
      ldapProvider = created.body.id;
    });

    await step("the directory now requires this host's second factor: bob sets up TOTP at sign-in, keeps his backup codes, then is in", async () => {
      const changed = await api('PATCH', `/sso/providers/${ldapProvider}`, operator, { mfa: 'local' });
      if (changed.status !== 200) throw new Error(`mfa: ${changed.status} ${JSON.stringify(changed.body)}`);
      await page.goto(`${BASE}/login`);
      await button('Sign in with Corp directory').click();
      const form = page.getByTestId('directory-form');
      await form.waitFor();
      await label('Username').fill('bob');
      await label('Password').fill('bobpw');
      await form.locator('button[type=submit]').click();
      const enrol = page.getByTestId('mfa-enrol');
      await enrol.waitFor();
      const secret = (await page.getByTestId('totp-secret').innerText()).trim();
      const code = execFileSync('oathtool', ['--totp', '-b', secret]).toString().trim();
      await label('Authentication code').fill(code);
      await page.getByTestId('mfa-step').locator('button[type=submit]').click();
      const codes = page.getByTestId('backup-codes');
      await codes.waitFor();
      if ((await codes.locator('li').count()) < 8) throw new Error('too few backup codes shown');
      await button('I have saved these codes').click();
      await page.getByTestId('whoami').waitFor({ timeout: 15_000 });
      await signOut();
      // Next time: the code step without the set-up.
      await page.goto(`${BASE}/login`);
      await button('Sign in with Corp directory').click();
      await form.waitFor();
      await label('Username').fill('bob');
      await label('Password').fill('bobpw');
      await form.locator('button[type=submit]').click();
      await page.getByTestId('mfa-step').waitFor();
      if (await page.getByTestId('mfa-enrol').count()) throw new Error('asked to enrol again');
      await label('Authentication code').fill('000000');
      await page.getByTestId('mfa-step').locator('button[type=submit]').click();
      await page.getByTestId('form-error').waitFor();
    });

    await step('the operator adds a SAML provider with the IdP\'s metadata; alice signs in through the IdP, an operator through "devs"', async () => {
      const enabled = await api('POST', '/plugins/infrapilot.saml/enable', operator);
      if (enabled.status !== 200) throw new Error(`enable: ${enabled.status} ${JSON.stringify(enabled.body)}`);
      // The IdP's metadata first; the provider's entity id exists once the provider does.
      const first = startSamlIdp('https://placeholder.test/metadata', 'http://127.0.0.1:1/acs');
      const metadata = await (await fetch(`http://127.0.0.1:${first.port}/metadata`)).text();
      first.stop();
      const created = await api('POST', '/sso/providers', operator, {
        plugin: 'infrapilot.saml',
        name: 'Corp SAML',
        settings: { idp_metadata: metadata, emails_verified: true },
        group_roles: [{ group: 'devs', role: 'operator' }],
      });
      if (created.status !== 201) throw new Error(`provider: ${created.status} ${JSON.stringify(created.body)}`);
      await new Promise((resolve) => setTimeout(resolve, 300));
      samlIdp = startSamlIdp(created.body.saml_metadata_url, created.body.callback_url, first);
      await page.goto(`${BASE}/login`);
      await page.getByRole('link', { name: 'Sign in with Corp SAML' }).click();
      await page.getByTestId('whoami').waitFor({ timeout: 15_000 });
      const who = await page.getByTestId('whoami').innerText();
      if (!who.includes('Alice Example') || !who.includes('Operator')) throw new Error(`signed in as ${who}`);
      await signOut();
    });

    await step('the audit trail has the SSO logins, refused and accepted', async () => {
      const r = await api('GET', '/audit?action=sso.login&limit=50', operator);
      const outcomes = r.body.events.map((e) => e.outcome);
      if (!outcomes.includes('success') || !outcomes.includes('failure')) throw new Error(`outcomes: ${outcomes.join(', ')}`);
    });

    await step('no browser console errors (CSP, React)', async () => {
      // The provider's own pages ask for resources off this machine (fonts): not ours.
      const relevant = relevantConsoleErrors(consoleErrors).filter(
        (t) => !/status of 4(03|04)/.test(t) && !/ERR_NAME_NOT_RESOLVED/.test(t),
      );
      if (relevant.length) throw new Error(`console errors:\n  ${relevant.join('\n  ')}`);
    });
    console.log('\ne2e sso: 1 passed, 0 failed');
  } catch (e) {
    await reportFailure(page, consoleErrors, 'sso-failure.png');
    throw e;
  } finally {
    await browser.close();
    op.stop();
    directory.stop();
    samlIdp?.stop();
    graph?.stop();
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`\nE2E SSO FAILED: ${e.message}`);
    console.log('e2e sso: 0 passed, 1 failed');
    process.exit(1);
  },
);
