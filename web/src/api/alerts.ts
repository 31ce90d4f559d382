// Plugins, the licence and alerting (/api/v1/plugins, /license, /alerts/*).
//
// The DTOs are the generated ones; fields the document types as free-form JSON
// objects (capabilities, JSON Schemas, settings) get their shapes here.

import { ApiError, getAccessToken, request } from './client';
import type { components } from './schema.gen';

type Schemas = components['schemas'];

export interface Capabilities {
  log?: boolean;
  http?: { hosts: string[] };
  mail?: boolean;
  kv?: boolean;
  config?: boolean;
  secrets?: boolean;
  clock?: boolean;
  random?: boolean;
}

/** The subset of JSON Schema plugin settings use (an object of simple properties). */
export interface JsonSchema {
  type?: string | string[];
  title?: string;
  description?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  additionalProperties?: boolean | JsonSchema;
  writeOnly?: boolean;
  default?: unknown;
  enum?: unknown[];
  format?: string;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
}

export type Plugin = Omit<Schemas['PluginDto'], 'requested' | 'granted' | 'settings_schema'> & {
  requested: Capabilities;
  granted: Capabilities;
  settings_schema: JsonSchema;
};
export type License = Omit<Schemas['LicenseDto'], 'limits'> & { limits: Record<string, number> };
export type Settings = Record<string, unknown>;
export type Channel = Omit<Schemas['ChannelDto'], 'settings'> & { settings: Settings };
export type Rule = Omit<Schemas['RuleDto'], 'params'> & { params: Record<string, unknown> };
export type AlertEvent = Schemas['AlertEventDto'];
export type Delivery = Schemas['DeliveryDto'];
export type TestResult = Schemas['TestResultDto'];
export type CreateRule = Omit<Schemas['CreateRuleRequest'], 'params'> & { params?: Record<string, unknown> };
/** `container_crashed`, `restart_loop` … as the API document lists them. */
export type RuleKind = CreateRule['kind'];

const enc = encodeURIComponent;

/** Uploads a bundle file (raw tar body, not JSON). */
async function uploadBundle(file: Blob): Promise<Plugin> {
  const token = getAccessToken();
  const res = await fetch('/api/v1/plugins', {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-tar', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
    body: file,
  });
  const body = (await res.json().catch(() => null)) as { error?: { code: string; message: string; field?: string | null } } | null;
  if (!res.ok) {
    throw new ApiError(res.status, body?.error?.code ?? 'http', body?.error?.message ?? `The server answered ${res.status}`, body?.error?.field ?? null);
  }
  return body as unknown as Plugin;
}

export const pluginsApi = {
  list: () => request<Plugin[]>('GET', '/plugins'),
  install: uploadBundle,
  enable: (id: string, grants?: Capabilities) =>
    request<Plugin>('POST', `/plugins/${enc(id)}/enable`, { body: grants ? { grants } : {} }),
  disable: (id: string) => request<Plugin>('POST', `/plugins/${enc(id)}/disable`),
  uninstall: (id: string) => request<void>('DELETE', `/plugins/${enc(id)}`),
  license: () => request<License>('GET', '/license'),
  uploadLicense: (license: string) => request<License>('PUT', '/license', { body: { license } }),
};

export const alertsApi = {
  channels: () => request<Channel[]>('GET', '/alerts/channels'),
  createChannel: (plugin: string, name: string, settings: Settings) =>
    request<Channel>('POST', '/alerts/channels', { body: { plugin, name, settings } }),
  updateChannel: (id: string, body: { name?: string; settings?: Settings; enabled?: boolean }) =>
    request<Channel>('PATCH', `/alerts/channels/${enc(id)}`, { body }),
  deleteChannel: (id: string) => request<void>('DELETE', `/alerts/channels/${enc(id)}`),
  testChannel: (id: string) => request<TestResult>('POST', `/alerts/channels/${enc(id)}/test`),
  rules: () => request<Rule[]>('GET', '/alerts/rules'),
  createRule: (body: CreateRule) => request<Rule>('POST', '/alerts/rules', { body }),
  setRuleEnabled: (id: string, enabled: boolean) =>
    request<Rule>('PATCH', `/alerts/rules/${enc(id)}`, { body: { enabled } }),
  deleteRule: (id: string) => request<void>('DELETE', `/alerts/rules/${enc(id)}`),
  history: (before?: string) => request<AlertEvent[]>('GET', '/alerts/history', { query: { before } }),
};

/** Names of the capabilities in a set ("log", "http (hooks.slack.com)", …). */
export function capabilityNames(c: Capabilities): string[] {
  const names: string[] = [];
  for (const k of ['log', 'mail', 'kv', 'config', 'secrets', 'clock', 'random'] as const) {
    if (c[k]) names.push(k);
  }
  if (c.http) names.push(`http (${c.http.hosts.join(', ')})`);
  return names;
}
