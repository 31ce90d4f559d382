// Nodes (agents), enrollment tokens and the containers on a node.
//
// TEMPORARY, HAND-WRITTEN TYPES: the container endpoints are not in web/openapi.json yet, so
// their types below are written by hand from docs/containers-api.md (same field names). Once
// the server's OpenAPI document describes them, replace every hand-written interface here by an
// alias of the generated type in ./types.ts (`Schemas['ContainerSummary']` …) and delete this
// note. Likewise `Agent` and `CreatedEnrollment` extend the generated types with the fields
// the server added since (`builtin`, `install_command`); drop the intersections after
// `npm run gen:api` picks them up.

import { request, requestLines } from './client';
import type { PolicyNotice } from './policies';
import type { AgentDto, CreateEnrollmentTokenRequest, CreatedEnrollmentToken, EnrollmentTokenDto } from './types';

// ---- agents and enrollment tokens (generated types + new fields) -----------

/** `AgentDto` plus `builtin`: the agent inside the host process (community mode). */
export type Agent = AgentDto & { builtin: boolean };

export type EnrollmentToken = EnrollmentTokenDto;
export type CreateEnrollmentToken = CreateEnrollmentTokenRequest;
/** `CreatedEnrollmentToken` plus the copyable one-line installer. */
export type CreatedEnrollment = CreatedEnrollmentToken & { install_command: string };

// ---- containers (hand-written, see the note above) ----------------------------

export interface PortMapping {
  private_port: number;
  public_port: number | null;
  ip: string | null;
  /** `tcp`, `udp` or `sctp`. */
  protocol: string;
}

/** Docker's states; any other string may come too. */
export type ContainerState = 'running' | 'exited' | 'created' | 'paused' | 'restarting' | 'dead' | (string & {});

export type Health = 'healthy' | 'unhealthy' | 'starting';

export interface ContainerSummary {
  id: string;
  name: string;
  image: string;
  state: ContainerState;
  /** Docker's human text, e.g. "Up 3 minutes". */
  status: string;
  created_at: string;
  ports: PortMapping[];
  networks: string[];
  compose_project: string | null;
  compose_service: string | null;
  health: Health | null;
  /** Share of one core in percent (200 = two cores busy). */
  cpu_percent: number | null;
  memory_bytes: number | null;
  memory_limit_bytes: number | null;
}

export interface StackSummary {
  /** The compose project. */
  name: string;
  containers: number;
  running: number;
}

export interface ContainerList {
  containers: ContainerSummary[];
  stacks: StackSummary[];
}

export interface EnvVar {
  name: string;
  /** Null where masked. */
  value: string | null;
}

export interface RevealedEnv {
  env: EnvVar[];
}

export interface MountInfo {
  /** `bind`, `volume`, `tmpfs`, … */
  kind: string;
  source: string;
  destination: string;
  mode: string;
  read_only: boolean;
  name: string | null;
}

export interface NetworkAttachment {
  name: string;
  ip_address: string;
  gateway: string;
  mac_address: string;
  aliases: string[];
}

export interface ContainerDetail {
  id: string;
  name: string;
  image: string;
  image_id: string;
  state: ContainerState;
  status: string;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  exit_code: number | null;
  restart_count: number;
  health: Health | null;
  command: string[];
  entrypoint: string[];
  working_dir: string;
  user: string;
  hostname: string;
  /** `no`, `always`, `unless-stopped`, `on-failure[:N]`. */
  restart_policy: string;
  labels: Record<string, string>;
  env: EnvVar[];
  mounts: MountInfo[];
  networks: NetworkAttachment[];
  ports: PortMapping[];
  compose_project: string | null;
  compose_service: string | null;
}

export type ContainerAction = 'start' | 'stop' | 'restart';

export interface ActionRequest {
  /** Seconds Docker waits after SIGTERM before SIGKILL (stop, restart). */
  timeout_seconds?: number;
}

export interface DeleteContainerRequest {
  /** The container's name, typed again as confirmation. */
  confirm_name: string;
  /** Remove even if running. */
  force?: boolean;
}

export interface ContainerActionResult {
  command_id: string;
  /** The container's id. */
  container: string;
  action: 'start' | 'stop' | 'restart' | 'remove' | (string & {});
  /** The state afterwards (null after removal). */
  state: string | null;
  /** What warn policies said about it (it was done). */
  warnings?: PolicyNotice[];
}

export interface StackActionResult {
  stack: string;
  action: string;
  results: ContainerActionResult[];
  errors: { container: string; message: string }[];
}

export type LogStream = 'stdout' | 'stderr';
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

export interface LogLine {
  /** RFC 3339 with nanoseconds. */
  time: string;
  stream: LogStream;
  level: LogLevel | null;
  message: string;
}

export interface LogPage {
  lines: LogLine[];
  /** Pages to OLDER lines: pass it as `cursor`. Null at the start of the log. */
  next_cursor: string | null;
}

export interface LogQuery {
  tail?: number;
  since?: string;
  until?: string;
  cursor?: string;
  q?: string;
  stream?: LogStream;
}

export interface DockerEventDto {
  id: number;
  time: string;
  container_id: string;
  container_name: string;
  action: string;
  exit_code: number | null;
  attributes: Record<string, string>;
}

export interface DockerEventList {
  events: DockerEventDto[];
}

export interface EventQuery {
  limit?: number;
  /** An event id: only older events. */
  before?: number;
  /** A container id or name. */
  container?: string;
}

export interface AgentCommandDto {
  id: string;
  idempotency_key: string;
  kind: string;
  target: string;
  state: 'pending' | 'delivered' | 'succeeded' | 'failed' | 'expired' | (string & {});
  deliveries: number;
  error: string | null;
  created_at: string;
  finished_at: string | null;
  requested_by: string;
}

export interface AgentCommandList {
  commands: AgentCommandDto[];
}

// ---- exec WebSocket frames ------------------------------------------------------

/** Text frames the client sends on the exec socket. */
export type ExecClientFrame = { type: 'input'; data: string } | { type: 'resize'; cols: number; rows: number };

/** Text frames the server sends on the exec socket (terminal output comes as binary frames). */
export type ExecServerFrame =
  | { type: 'exit'; exit_code: number }
  | { type: 'error'; message: string }
  | { type: 'warning'; message: string };

// ---- endpoints ------------------------------------------------------------------

const enc = encodeURIComponent;
const agentPath = (id: string) => `/agents/${enc(id)}`;
const containerPath = (id: string, cid: string) => `${agentPath(id)}/containers/${enc(cid)}`;

export const nodesApi = {
  agents: () => request<Agent[]>('GET', '/agents'),
  agent: (id: string) => request<Agent>('GET', agentPath(id)),
  revokeAgent: (id: string) => request<void>('POST', `${agentPath(id)}/revoke`),

  enrollmentTokens: () => request<EnrollmentToken[]>('GET', '/enrollment-tokens'),
  createEnrollmentToken: (body: CreateEnrollmentToken) =>
    request<CreatedEnrollment>('POST', '/enrollment-tokens', { body }),
  revokeEnrollmentToken: (id: string) => request<void>('DELETE', `/enrollment-tokens/${enc(id)}`),
};

export const containersApi = {
  list: (id: string, all = true) =>
    request<ContainerList>('GET', `${agentPath(id)}/containers`, { query: { all: String(all) } }),
  detail: (id: string, cid: string) => request<ContainerDetail>('GET', containerPath(id, cid)),
  revealEnv: (id: string, cid: string) => request<RevealedEnv>('POST', `${containerPath(id, cid)}/env/reveal`),
  action: (id: string, cid: string, action: ContainerAction, body?: ActionRequest) =>
    request<ContainerActionResult>('POST', `${containerPath(id, cid)}/${action}`, { body }),
  remove: (id: string, cid: string, body: DeleteContainerRequest) =>
    request<ContainerActionResult>('DELETE', containerPath(id, cid), { body }),
  stackAction: (id: string, project: string, action: ContainerAction, body?: ActionRequest) =>
    request<StackActionResult>('POST', `${agentPath(id)}/stacks/${enc(project)}/${action}`, { body }),
  logs: (id: string, cid: string, q: LogQuery) =>
    request<LogPage>('GET', `${containerPath(id, cid)}/logs`, { query: { ...q } }),
  events: (id: string, q: EventQuery = {}) =>
    request<DockerEventList>('GET', `${agentPath(id)}/events`, { query: { ...q } }),
  commands: (id: string) => request<AgentCommandList>('GET', `${agentPath(id)}/commands`),
  /** Creates a container from a spec; `onLine` gets the pull's progress lines, then the result
   *  (`{"result": …}`) or the error (`{"error": …}`) line. */
  create: (id: string, spec: Record<string, unknown>, onLine: (line: unknown) => void) =>
    requestLines(`${agentPath(id)}/containers`, spec, onLine),
};

/** API paths of the WebSockets (give them to `socketUrl` from ./client). */
export const containerSockets = {
  logs: (id: string, cid: string) => `${containerPath(id, cid)}/logs/ws`,
  exec: (id: string, cid: string) => `${containerPath(id, cid)}/exec/ws`,
};
