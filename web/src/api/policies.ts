// Policies (/api/v1/policies): the organisation's policies, the types the enabled engines offer
// (with the JSON Schema of their conditions), the violations, a dry run against what runs now.

import { request } from './client';
import type { JsonSchema } from './alerts';
import type { components } from './schema.gen';

type Schemas = components['schemas'];

export type PolicyAction = 'block' | 'warn' | 'audit';
export type Policy = Omit<Schemas['PolicyDto'], 'conditions'> & { conditions: Record<string, unknown> };
export type PolicyType = Omit<Schemas['PolicyTypeDto'], 'conditions_schema'> & { conditions_schema: JsonSchema };
export type PolicyBody = Omit<Schemas['PolicyRequest'], 'conditions'> & { conditions?: Record<string, unknown> };
export type Violation = Schemas['ViolationDto'];
export type ViolationPage = Schemas['ViolationPage'];
export type DryRun = Schemas['DryRunResult'];
export type PolicyNotice = Schemas['PolicyNotice'];

export interface ViolationQuery {
  policy_id?: string;
  decision?: string;
  action?: string;
  cursor?: string;
  limit?: number;
}

const enc = encodeURIComponent;

export const policiesApi = {
  list: () => request<Policy[]>('GET', '/policies'),
  get: (id: string) => request<Policy>('GET', `/policies/${enc(id)}`),
  types: () => request<PolicyType[]>('GET', '/policies/types'),
  create: (body: PolicyBody) => request<Policy>('POST', '/policies', { body }),
  update: (id: string, body: PolicyBody) => request<Policy>('PUT', `/policies/${enc(id)}`, { body }),
  remove: (id: string) => request<void>('DELETE', `/policies/${enc(id)}`),
  dryRun: (body: PolicyBody) => request<DryRun>('POST', '/policies/dry-run', { body }),
  violations: (q: ViolationQuery) =>
    request<ViolationPage>('GET', '/policies/violations', {
      query: Object.fromEntries(Object.entries(q).filter(([, v]) => v !== undefined && v !== '').map(([k, v]) => [k, String(v)])),
    }),
};

/** Warnings of warn policies, as one sentence to show next to an action's outcome. */
export function warningText(warnings: PolicyNotice[] | undefined | null): string {
  if (!warnings || warnings.length === 0) return '';
  return ` Policy warning: ${warnings.map((w) => `${w.name} — ${w.reasons.join('; ')}`).join(' | ')}`;
}
