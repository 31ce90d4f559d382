// Reverse proxy hosts of a node (/api/v1/agents/:id/proxies): CRUD, revisions, rollback,
// re-apply and the node's drift and certificate report. The DTOs are the generated ones.

import { request } from './client';
import type { components } from './schema.gen';

type Schemas = components['schemas'];

export type ProxyHost = Schemas['ProxyDto'];
export type ProxySpec = Schemas['ProxySpec'];
export type Revision = Schemas['RevisionDto'];
export type NodeStatus = Schemas['ProxyNodeStatus'];
export type Certificate = Schemas['CertificateStatus'];

const enc = encodeURIComponent;
const base = (agent: string) => `/agents/${enc(agent)}/proxies`;

export const proxiesApi = {
  list: (agent: string) => request<ProxyHost[]>('GET', base(agent)),
  get: (agent: string, id: string) => request<ProxyHost>('GET', `${base(agent)}/${enc(id)}`),
  create: (agent: string, spec: ProxySpec) => request<ProxyHost>('POST', base(agent), { body: spec }),
  update: (agent: string, id: string, spec: ProxySpec) =>
    request<ProxyHost>('PUT', `${base(agent)}/${enc(id)}`, { body: spec }),
  remove: (agent: string, id: string) => request<void>('DELETE', `${base(agent)}/${enc(id)}`),
  revisions: (agent: string) => request<Revision[]>('GET', `${base(agent)}/revisions`),
  rollback: (agent: string, number: number) =>
    request<Revision>('POST', `${base(agent)}/revisions/${number}/rollback`),
  reapply: (agent: string) => request<Revision>('POST', `${base(agent)}/reapply`),
  drift: (agent: string) => request<NodeStatus>('GET', `${base(agent)}/drift`),
};

/** The spec part of a host (what the form edits and PUT takes). */
export function specOf(h: ProxyHost): ProxySpec {
  return {
    domains: h.domains,
    upstream: h.upstream,
    websockets: h.websockets,
    locations: h.locations,
    headers: h.headers,
    rate_limit: h.rate_limit,
    max_body_bytes: h.max_body_bytes,
    access: h.access,
    tls: h.tls,
  };
}

export type UploadedCertificate = Schemas['CertificateDto'];
export type CertificateUpload = Schemas['CertificateUpload'];

const certs = '/proxy-certificates';

/** Certificates uploaded for proxy hosts (`tls.mode: "uploaded"`); keys are write-only. */
export const certificatesApi = {
  list: () => request<UploadedCertificate[]>('GET', certs),
  upload: (body: CertificateUpload) => request<UploadedCertificate>('POST', certs, { body }),
  replace: (id: string, body: CertificateUpload) => request<UploadedCertificate>('PUT', `${certs}/${enc(id)}`, { body }),
  remove: (id: string) => request<void>('DELETE', `${certs}/${enc(id)}`),
};
