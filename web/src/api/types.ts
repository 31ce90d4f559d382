// Hand-written TypeScript types for the InfraPilot HTTP API (/api/v1).
// They mirror `components.schemas` of the OpenAPI document served at
// GET /api/v1/openapi.json; keep the names identical so a diff is easy.
// Times are RFC 3339 strings; ids are UUID strings.

/** The four built-in roles, lowest privilege last. */
export type Role = 'super_admin' | 'admin' | 'operator' | 'viewer';

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

// ---- errors ---------------------------------------------------------------

export interface ErrorDetail {
  /** Machine-readable, e.g. `invalid_value`, `unauthorized`, `conflict`, `last_super_admin`. */
  code: string;
  message: string;
  /** The request field the error is about, when there is one. */
  field?: string | null;
}

export interface ErrorBody {
  error: ErrorDetail;
}

// ---- setup ----------------------------------------------------------------

export interface SetupStatus {
  needed: boolean;
}

export interface SetupRequest {
  email: string;
  password: string;
  name: string;
}

// ---- auth -----------------------------------------------------------------

export interface LoginRequest {
  email: string;
  password: string;
}

export interface TokenPair {
  access_token: string;
  refresh_token: string;
  token_type: string;
  /** Seconds the access token is valid for (900). */
  expires_in: number;
}

export interface MfaRequired {
  mfa_required: boolean;
  mfa_token: string;
}

/** `oneOf: [TokenPair, MfaRequired]` */
export type LoginResponse = TokenPair | MfaRequired;

export function isMfaRequired(r: LoginResponse): r is MfaRequired {
  return 'mfa_required' in r && r.mfa_required === true;
}

export interface MfaVerifyRequest {
  mfa_token: string;
  /** A 6-digit TOTP code or a backup code such as `k7q2-9xmf`. */
  code: string;
}

export interface RefreshRequest {
  refresh_token: string;
}

export interface ChangePasswordRequest {
  current_password: string;
  new_password: string;
}

export interface SessionDto {
  id: string;
  ip: string;
  user_agent: string;
  created_at: string;
  last_used_at: string;
  expires_at: string;
  /** True for the session the request was made with. */
  current: boolean;
}

// ---- MFA ------------------------------------------------------------------

export interface MfaStatus {
  enabled: boolean;
  /** An enrolment was started but not confirmed. */
  pending: boolean;
  backup_codes_remaining: number;
}

export interface MfaEnrollResponse {
  otpauth_uri: string;
  /** Base32 TOTP secret. */
  secret: string;
  /** `data:image/svg+xml;base64,...` QR code of `otpauth_uri`. */
  qr_svg_data_url: string;
}

export interface MfaConfirmRequest {
  code: string;
}

export interface BackupCodes {
  backup_codes: string[];
}

export interface PasswordConfirmation {
  password: string;
}

// ---- users and roles -----------------------------------------------------

export interface UserDto {
  id: string;
  email: string;
  name: string;
  role: Role;
  mfa_enabled: boolean;
  disabled: boolean;
  created_at: string;
  updated_at: string;
}

export interface CreateUserRequest {
  email: string;
  password: string;
  name: string;
  role: Role;
}

/** Every field optional; only the ones sent are changed. */
export interface UpdateUserRequest {
  name?: string | null;
  role?: Role | null;
  disabled?: boolean | null;
  password?: string | null;
}

export interface RoleInfo {
  id: Role;
  description: string;
}

// ---- API tokens -----------------------------------------------------------

export interface ApiTokenDto {
  id: string;
  name: string;
  role: Role;
  /** User id of the creator. */
  created_by: string;
  created_at: string;
  expires_at: string;
  last_used_at?: string | null;
  revoked: boolean;
}

export interface CreateTokenRequest {
  name: string;
  role: Role;
  expires_in_days: number;
}

/** `allOf: [ApiTokenDto, {secret}]`; the secret is shown this once. */
export interface CreatedToken extends ApiTokenDto {
  secret: string;
}

// ---- audit ----------------------------------------------------------------

export interface AuditEventDto {
  seq: number;
  id: string;
  at: string;
  actor_id?: string | null;
  /** An email, `anonymous` or `cli`. */
  actor: string;
  /** e.g. `auth.login`, `user.create`, `mfa.enable`. */
  action: string;
  target: string;
  ip: string;
  outcome: string;
  detail: JsonValue;
  hash: string;
}

export interface AuditPageDto {
  /** Newest first. */
  events: AuditEventDto[];
  /** Pass as `before_seq` for the next (older) page; null at the end. */
  next_cursor?: number | null;
}

/** Query of GET /api/v1/audit (all optional). */
export interface AuditQuery {
  actor?: string;
  action?: string;
  /** RFC 3339, inclusive. */
  since?: string;
  /** RFC 3339, exclusive. */
  until?: string;
  before_seq?: number;
  /** 1–500, default 50. */
  limit?: number;
}

export interface BadEvent {
  seq: number;
  id?: string | null;
  reason: string;
}

export interface ChainReport {
  ok: boolean;
  checked: number;
  first_bad_event?: BadEvent | null;
}

// ---- health ---------------------------------------------------------------

export interface Health {
  status: string;
  version: string;
}
