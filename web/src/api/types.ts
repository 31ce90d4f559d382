// TypeScript types of the InfraPilot HTTP API (/api/v1).
//
// Everything here that the OpenAPI document defines is an alias of the type
// generated from it (src/api/schema.gen.ts, written by `npm run gen:api` from
// web/openapi.json, which the server's CI keeps equal to the code), so these
// cannot drift from the server. Do not hand-write a schema type here: change
// the Rust DTO, regenerate web/openapi.json, and the alias follows.
// Times are RFC 3339 strings; ids are UUID strings.

import type { components, paths } from './schema.gen';

type Schemas = components['schemas'];

// ---- errors ---------------------------------------------------------------

export type ErrorDetail = Schemas['ErrorDetail'];
export type ErrorBody = Schemas['ErrorBody'];

// ---- setup ----------------------------------------------------------------

export type SetupStatus = Schemas['SetupStatus'];
export type SetupRequest = Schemas['SetupRequest'];

// ---- auth -----------------------------------------------------------------

export type LoginRequest = Schemas['LoginRequest'];
export type TokenPair = Schemas['TokenPair'];
export type MfaRequired = Schemas['MfaRequired'];
/** `oneOf: [TokenPair, MfaRequired]` */
export type LoginResponse = Schemas['LoginResponse'];
export type MfaVerifyRequest = Schemas['MfaVerifyRequest'];
export type RefreshRequest = Schemas['RefreshRequest'];
export type ChangePasswordRequest = Schemas['ChangePasswordRequest'];
export type SessionDto = Schemas['SessionDto'];

// Hand-written: a runtime type guard, not a type; the document only says
// `oneOf`, without a discriminator.
export function isMfaRequired(r: LoginResponse): r is MfaRequired {
  return 'mfa_required' in r && r.mfa_required === true;
}

// ---- MFA ------------------------------------------------------------------

export type MfaStatus = Schemas['MfaStatus'];
export type MfaEnrollResponse = Schemas['MfaEnrollResponse'];
export type MfaConfirmRequest = Schemas['MfaConfirmRequest'];
export type BackupCodes = Schemas['BackupCodes'];
export type PasswordConfirmation = Schemas['PasswordConfirmation'];

// ---- users and roles -----------------------------------------------------

export type UserDto = Schemas['UserDto'];
export type CreateUserRequest = Schemas['CreateUserRequest'];
/** Every field optional; only the ones sent are changed. */
export type UpdateUserRequest = Schemas['UpdateUserRequest'];
export type RoleInfo = Schemas['RoleInfo'];
/** `GET /auth/me`: the person with their role in the organisation the request acted in. */
export type MeDto = Schemas['MeDto'];

// ---- organisations and sign-up ---------------------------------------------

export type OrganizationDto = Schemas['OrganizationDto'];
export type MemberDto = Schemas['MemberDto'];
export type InvitationDto = Schemas['InvitationDto'];
export type CreatedInvitation = Schemas['CreatedInvitation'];
export type SignUpRequest = Schemas['SignUpRequest'];
export type SignUpResponse = Schemas['SignUpResponse'];

// ---- single sign-on --------------------------------------------------------

export type LoginProviderDto = Schemas['LoginProviderDto'];
export type SsoProviderDto = Schemas['ProviderDto'];
export type CreateSsoProviderRequest = Schemas['CreateProviderRequest'];
export type UpdateSsoProviderRequest = Schemas['UpdateProviderRequest'];
export type GroupRoleDto = Schemas['GroupRoleDto'];

/** The four built-in roles (an enum in the document). */
export type Role = Schemas['Role'];

// ---- API tokens -----------------------------------------------------------

export type ApiTokenDto = Schemas['ApiTokenDto'];
export type CreateTokenRequest = Schemas['CreateTokenRequest'];
/** `allOf: [ApiTokenDto, {secret}]`; the secret is shown this once. */
export type CreatedToken = Schemas['CreatedToken'];

// ---- audit ----------------------------------------------------------------

export type AuditEventDto = Schemas['AuditEventDto'];
export type AuditPageDto = Schemas['AuditPageDto'];
export type BadEvent = Schemas['BadEvent'];
export type ChainReport = Schemas['ChainReport'];

/** Query of GET /api/v1/audit (all optional), from the operation's parameters. */
export type AuditQuery = NonNullable<paths['/api/v1/audit']['get']['parameters']['query']>;

// ---- agents (nodes) and enrollment tokens ----------------------------------
// Fields the server added after the last regeneration (`builtin`, `install_command`) are
// added by intersection in ./containers.ts until openapi.json catches up.

export type AgentDto = Schemas['AgentDto'];
export type EnrollmentTokenDto = Schemas['EnrollmentTokenDto'];
export type CreateEnrollmentTokenRequest = Schemas['CreateEnrollmentTokenRequest'];
/** `allOf: [EnrollmentTokenDto, {secret}]`; the secret is shown this once. */
export type CreatedEnrollmentToken = Schemas['CreatedEnrollmentToken'];

// ---- health ---------------------------------------------------------------

export type Health = Schemas['Health'];
export type Readiness = Schemas['Readiness'];

// ---- logs -----------------------------------------------------------------

export type LogLineDto = Schemas['LogLineDto'];
export type LogGapDto = Schemas['LogGapDto'];
export type LogPageDto = Schemas['LogPageDto'];
export type LogVolumeDto = Schemas['LogVolumeDto'];
export type HealthDto = Schemas['HealthDto'];
export type NodeHealthDto = Schemas['NodeHealthDto'];
export type NodeSamplesDto = Schemas['NodeSamplesDto'];
export type VolumeBucket = Schemas['VolumeBucket'];
export type LogRetentionDto = Schemas['LogRetentionDto'];
