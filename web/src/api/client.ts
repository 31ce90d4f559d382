// The one API client of the dashboard: a fetch wrapper that adds the bearer
// token, refreshes once on 401 (single-flight, since refresh tokens rotate and
// reusing an old one ends the session) and turns error bodies into ApiError.
//
// Token storage: sessionStorage, on purpose. Each browser tab then holds its
// own session and its own refresh-token chain, so two tabs can never race to
// rotate the same refresh token (which the server treats as theft and answers
// by killing the session), and the tokens are gone when the tab is closed.
// The cost is signing in again in a new tab.

import type {
  ApiTokenDto,
  AuditPageDto,
  AuditQuery,
  BackupCodes,
  ChainReport,
  ChangePasswordRequest,
  CreateTokenRequest,
  CreateUserRequest,
  CreatedToken,
  ErrorBody,
  Health,
  LoginRequest,
  LoginResponse,
  LoginProviderDto,
  SsoProviderDto,
  CreateSsoProviderRequest,
  UpdateSsoProviderRequest,
  MeDto,
  MemberDto,
  InvitationDto,
  CreatedInvitation,
  OrganizationDto,
  SignUpRequest,
  SignUpResponse,
  MfaEnrollResponse,
  MfaStatus,
  RoleInfo,
  SessionDto,
  SetupRequest,
  SetupStatus,
  TokenPair,
  UpdateUserRequest,
  UserDto,
} from './types';

const BASE = '/api/v1';
const STORAGE_KEY = 'infrapilot.tokens';
const ORG_KEY = 'infrapilot.org';
/** The header that names the organisation a signed-in person's request acts in. */
export const ORG_HEADER = 'X-InfraPilot-Org';

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly field: string | null;

  constructor(status: number, code: string, message: string, field: string | null = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

/** Any thrown value as an ApiError, so pages can always show `.message`. */
export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  if (e instanceof Error) return new ApiError(0, 'client', e.message);
  return new ApiError(0, 'client', String(e));
}

// ---- token storage --------------------------------------------------------

interface StoredTokens {
  access_token: string;
  refresh_token: string;
}

function loadTokens(): StoredTokens | null {
  try {
    const raw = sessionStorage.getItem(STORAGE_KEY);
    if (!raw) return null;
    const t = JSON.parse(raw) as Partial<StoredTokens>;
    return typeof t.access_token === 'string' && typeof t.refresh_token === 'string'
      ? { access_token: t.access_token, refresh_token: t.refresh_token }
      : null;
  } catch {
    return null;
  }
}

let tokens: StoredTokens | null = loadTokens();
let refreshing: Promise<boolean> | null = null;
const authLostListeners = new Set<() => void>();

export function hasTokens(): boolean {
  return tokens !== null;
}

export function setTokens(pair: TokenPair | null): void {
  tokens = pair ? { access_token: pair.access_token, refresh_token: pair.refresh_token } : null;
  if (tokens) sessionStorage.setItem(STORAGE_KEY, JSON.stringify(tokens));
  else sessionStorage.removeItem(STORAGE_KEY);
}

// ---- the organisation requests act in -------------------------------------
// Chosen in the organisation switcher, per tab like the tokens. Sent as X-InfraPilot-Org on every
// authenticated request (and as the WebSocket subprotocol `org.<id>`); the server checks it against
// the person's memberships each time. Unset: the server picks the person's oldest membership.

let currentOrg: string | null = sessionStorage.getItem(ORG_KEY);

export function getOrg(): string | null {
  return currentOrg;
}

export function setOrg(id: string | null): void {
  currentOrg = id;
  if (id) sessionStorage.setItem(ORG_KEY, id);
  else sessionStorage.removeItem(ORG_KEY);
}

/** The current access token, or null when signed out. For WebSockets, which cannot send an
 *  `Authorization` header: the token travels as the subprotocol `bearer.<token>` (see
 *  `socketProtocols`). Prefer `freshAccessToken()` right before opening a socket. */
export function getAccessToken(): string | null {
  return tokens?.access_token ?? null;
}

/** The access token after one cheap authenticated call (GET /auth/me), so an expired token is
 *  refreshed first (a failed WebSocket upgrade cannot be told apart from a network error, so it
 *  cannot trigger the refresh itself). Throws like any request when the session is gone. */
export async function freshAccessToken(): Promise<string> {
  await request<unknown>('GET', '/auth/me');
  const t = getAccessToken();
  if (!t) throw new ApiError(401, 'unauthorized', 'You are signed out.');
  return t;
}

/** The subprotocols that authenticate a dashboard WebSocket; the server selects `infrapilot.v1`. */
export function socketProtocols(accessToken: string): string[] {
  const protocols = ['infrapilot.v1', `bearer.${accessToken}`];
  if (currentOrg) protocols.push(`org.${currentOrg}`);
  return protocols;
}

/** A `ws:`/`wss:` URL (matching the page's scheme) for an API path such as `/agents/…/logs/ws`. */
export function socketUrl(path: string, query?: Query): string {
  const scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${window.location.host}${buildUrl(path, query)}`;
}

/** Called when the session is gone for good (refresh failed); returns an unsubscribe. */
export function onAuthLost(listener: () => void): () => void {
  authLostListeners.add(listener);
  return () => authLostListeners.delete(listener);
}

const orgLostListeners = new Set<() => void>();

/** Called when a request names an organisation the person no longer belongs to. */
export function onOrgLost(listener: () => void): () => void {
  orgLostListeners.add(listener);
  return () => orgLostListeners.delete(listener);
}

function authLost(): void {
  setTokens(null);
  setOrg(null);
  for (const l of authLostListeners) l();
}

// ---- transport ------------------------------------------------------------

type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
export type Query = Record<string, string | number | undefined | null>;

interface RequestOptions {
  body?: unknown;
  query?: Query;
  /** Send the bearer token and refresh on 401 (default true). */
  auth?: boolean;
  /** Act in this organisation instead of the tab's (to check one before switching to it). */
  org?: string;
}

function buildUrl(path: string, query?: Query): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v !== undefined && v !== null && v !== '') params.set(k, String(v));
  }
  const qs = params.toString();
  return `${BASE}${path}${qs ? `?${qs}` : ''}`;
}

async function send(method: Method, url: string, body: unknown, accessToken: string | null, org?: string): Promise<Response> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (accessToken) {
    headers.Authorization = `Bearer ${accessToken}`;
    const acting = org ?? currentOrg;
    if (acting) headers[ORG_HEADER] = acting;
  }
  try {
    return await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
    });
  } catch {
    throw new ApiError(0, 'network', 'Cannot reach the InfraPilot server. Check that it is running.');
  }
}

async function errorFrom(res: Response): Promise<ApiError> {
  try {
    const body = (await res.json()) as Partial<ErrorBody>;
    if (body.error && typeof body.error.message === 'string') {
      return new ApiError(res.status, body.error.code ?? 'error', body.error.message, body.error.field ?? null);
    }
  } catch {
    // not JSON; fall through
  }
  return new ApiError(res.status, 'http', `The server answered ${res.status} ${res.statusText}`.trim());
}

async function refreshTokens(): Promise<boolean> {
  const current = tokens;
  if (!current) return false;
  const res = await send('POST', buildUrl('/auth/refresh'), { refresh_token: current.refresh_token }, null);
  if (!res.ok) return false;
  setTokens((await res.json()) as TokenPair);
  return true;
}

/** Refresh once for everyone who saw a 401 with `usedAccess`. */
async function refreshAfter401(usedAccess: string): Promise<boolean> {
  if (tokens && tokens.access_token !== usedAccess) return true; // someone else already refreshed
  if (!refreshing) {
    refreshing = refreshTokens()
      .catch(() => false)
      .finally(() => {
        refreshing = null;
      });
  }
  return refreshing;
}

export async function request<T>(method: Method, path: string, opts: RequestOptions = {}): Promise<T> {
  const auth = opts.auth ?? true;
  const url = buildUrl(path, opts.query);
  const used = auth ? (tokens?.access_token ?? null) : null;
  let res = await send(method, url, opts.body, used, opts.org);

  if (res.status === 401 && auth && used) {
    if (await refreshAfter401(used)) {
      res = await send(method, url, opts.body, tokens?.access_token ?? null, opts.org);
    }
    if (res.status === 401) {
      const err = await errorFrom(res);
      authLost();
      throw err;
    }
  }

  if (!res.ok) {
    const err = await errorFrom(res);
    // The tab's organisation is no longer the person's (removed, or deleted elsewhere).
    if (err.status === 404 && err.field?.toLowerCase() === ORG_HEADER.toLowerCase() && !opts.org && auth) {
      for (const l of orgLostListeners) l();
    }
    throw err;
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

/** A POST whose answer is NDJSON (one JSON object per line, e.g. an image pull's progress): each
 *  line is handed to `onLine` as it arrives. An error answer (before the stream) throws. */
export async function requestLines(path: string, body: unknown, onLine: (line: unknown) => void): Promise<void> {
  const url = buildUrl(path);
  const headers = (token: string | null): Record<string, string> => {
    const h: Record<string, string> = { Accept: 'application/x-ndjson', 'Content-Type': 'application/json' };
    if (token) h.Authorization = `Bearer ${token}`;
    if (currentOrg) h[ORG_HEADER] = currentOrg;
    return h;
  };
  const go = (token: string | null) =>
    fetch(url, { method: 'POST', headers: headers(token), body: JSON.stringify(body), credentials: 'same-origin' });
  const used = tokens?.access_token ?? null;
  let res = await go(used);
  if (res.status === 401 && used && (await refreshAfter401(used))) res = await go(tokens?.access_token ?? null);
  if (!res.ok) throw await errorFrom(res);
  const reader = res.body?.getReader();
  if (!reader) return;
  const decoder = new TextDecoder();
  let buffered = '';
  for (;;) {
    const { value, done } = await reader.read();
    buffered += decoder.decode(value ?? new Uint8Array(), { stream: !done });
    let at;
    while ((at = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, at).trim();
      buffered = buffered.slice(at + 1);
      if (line) onLine(JSON.parse(line));
    }
    if (done) break;
  }
  if (buffered.trim()) onLine(JSON.parse(buffered.trim()));
}

/** A GET whose answer is a file (CSV): its bytes, after the same refresh-on-401 as `request`. */
export async function requestBlob(path: string, query?: Query): Promise<Blob> {
  const url = buildUrl(path, query);
  const used = tokens?.access_token ?? null;
  let res = await send('GET', url, undefined, used);
  if (res.status === 401 && used && (await refreshAfter401(used))) {
    res = await send('GET', url, undefined, tokens?.access_token ?? null);
  }
  if (!res.ok) throw await errorFrom(res);
  return res.blob();
}

// ---- endpoints ------------------------------------------------------------

const orgPath = (id: string) => `/orgs/${encodeURIComponent(id)}`;

export const api = {
  health: () => fetch('/healthz').then((r) => r.json() as Promise<Health>),

  setupStatus: () => request<SetupStatus>('GET', '/setup', { auth: false }),
  setup: (body: SetupRequest) => request<UserDto>('POST', '/setup', { body, auth: false }),

  login: (body: LoginRequest) => request<LoginResponse>('POST', '/auth/login', { body, auth: false }),
  mfaVerify: (mfa_token: string, code: string) =>
    request<TokenPair>('POST', '/auth/mfa/verify', { body: { mfa_token, code }, auth: false }),
  logout: () => request<void>('POST', '/auth/logout'),
  /** The person, acting in `org` if given (else the tab's organisation). */
  me: (org?: string) => request<MeDto>('GET', '/auth/me', { org }),
  changePassword: (body: ChangePasswordRequest) => request<void>('PUT', '/auth/password', { body }),
  sessions: () => request<SessionDto[]>('GET', '/auth/sessions'),
  revokeSession: (id: string) => request<void>('DELETE', `/auth/sessions/${encodeURIComponent(id)}`),

  mfaStatus: () => request<MfaStatus>('GET', '/auth/mfa'),
  mfaEnroll: () => request<MfaEnrollResponse>('POST', '/auth/mfa/enroll'),
  mfaConfirm: (code: string) => request<BackupCodes>('POST', '/auth/mfa/confirm', { body: { code } }),
  mfaDisable: (password: string) => request<void>('POST', '/auth/mfa/disable', { body: { password } }),
  mfaBackupCodes: (password: string) =>
    request<BackupCodes>('POST', '/auth/mfa/backup-codes', { body: { password } }),

  roles: () => request<RoleInfo[]>('GET', '/roles'),
  users: () => request<UserDto[]>('GET', '/users'),
  createUser: (body: CreateUserRequest) => request<UserDto>('POST', '/users', { body }),
  updateUser: (id: string, body: UpdateUserRequest) =>
    request<UserDto>('PATCH', `/users/${encodeURIComponent(id)}`, { body }),
  deleteUser: (id: string) => request<void>('DELETE', `/users/${encodeURIComponent(id)}`),
  resetUserMfa: (id: string) => request<void>('DELETE', `/users/${encodeURIComponent(id)}/mfa`),

  tokens: () => request<ApiTokenDto[]>('GET', '/tokens'),
  createToken: (body: CreateTokenRequest) => request<CreatedToken>('POST', '/tokens', { body }),
  revokeToken: (id: string) => request<void>('DELETE', `/tokens/${encodeURIComponent(id)}`),

  signUp: (body: SignUpRequest) => request<SignUpResponse>('POST', '/signup', { body, auth: false }),
  verifyEmail: (token: string) => request<void>('POST', '/signup/verify', { body: { token }, auth: false }),

  loginProviders: (org?: string) =>
    request<LoginProviderDto[]>('GET', '/auth/sso/providers', { auth: false, query: { org } }),
  directorySignIn: (id: string, org: string | undefined, username: string, password: string) =>
    request<LoginResponse>('POST', `/auth/sso/${encodeURIComponent(id)}/password`, {
      body: { username, password },
      auth: false,
      query: { org },
    }),
  exchangeSsoCode: (code: string) =>
    request<LoginResponse>('POST', '/auth/sso/exchange', { body: { code }, auth: false }),
  ssoProviders: () => request<SsoProviderDto[]>('GET', '/sso/providers'),
  ssoPolicy: () => request<{ require_sso: boolean }>('GET', '/sso/policy'),
  setSsoPolicy: (require_sso: boolean) => request<{ require_sso: boolean }>('PUT', '/sso/policy', { body: { require_sso } }),
  createSsoProvider: (body: CreateSsoProviderRequest) => request<SsoProviderDto>('POST', '/sso/providers', { body }),
  updateSsoProvider: (id: string, body: UpdateSsoProviderRequest) =>
    request<SsoProviderDto>('PATCH', `/sso/providers/${encodeURIComponent(id)}`, { body }),
  deleteSsoProvider: (id: string) => request<void>('DELETE', `/sso/providers/${encodeURIComponent(id)}`),

  orgs: () => request<OrganizationDto[]>('GET', '/orgs'),
  createOrg: (name: string) => request<OrganizationDto>('POST', '/orgs', { body: { name } }),
  org: (id: string) => request<OrganizationDto>('GET', orgPath(id)),
  renameOrg: (id: string, name: string) => request<OrganizationDto>('PUT', orgPath(id), { body: { name } }),
  deleteOrg: (id: string, confirm_name: string) => request<void>('DELETE', orgPath(id), { body: { confirm_name } }),
  members: (id: string) => request<MemberDto[]>('GET', `${orgPath(id)}/members`),
  addMember: (id: string, email: string, role: string) =>
    request<MemberDto>('POST', `${orgPath(id)}/members`, { body: { email, role } }),
  setMemberRole: (id: string, uid: string, role: string) =>
    request<MemberDto>('PUT', `${orgPath(id)}/members/${encodeURIComponent(uid)}`, { body: { role } }),
  removeMember: (id: string, uid: string) => request<void>('DELETE', `${orgPath(id)}/members/${encodeURIComponent(uid)}`),
  resetMemberMfa: (id: string, uid: string) =>
    request<void>('DELETE', `${orgPath(id)}/members/${encodeURIComponent(uid)}/mfa`),
  invitations: (id: string) => request<InvitationDto[]>('GET', `${orgPath(id)}/invitations`),
  invite: (id: string, email: string, role: string) =>
    request<CreatedInvitation>('POST', `${orgPath(id)}/invitations`, { body: { email, role } }),
  revokeInvitation: (id: string, iid: string) =>
    request<void>('DELETE', `${orgPath(id)}/invitations/${encodeURIComponent(iid)}`),
  acceptInvitation: (token: string) =>
    request<OrganizationDto>('POST', `/invitations/${encodeURIComponent(token)}/accept`),

  audit: (q: AuditQuery) => request<AuditPageDto>('GET', '/audit', { query: { ...q } }),
  auditVerify: () => request<ChainReport>('GET', '/audit/verify'),
};

/** Where the browser goes to sign in through provider `id` (a full page load: the identity
 *  provider redirects back to the host, which hands the dashboard a one-time code). */
export function ssoStartUrl(id: string, org?: string): string {
  return buildUrl(`/auth/sso/${encodeURIComponent(id)}/start`, { org });
}
