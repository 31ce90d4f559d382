// Proxy hosts of a node: status (applied / failed with nginx's own message / pending), certificate
// expiry and TLS score, drift; the host form with a container picker; revisions with rollback.

import { useEffect, useState } from 'react';
import { useSearchParams } from 'react-router-dom';
import { ApiError, toApiError } from '../api/client';
import { containersApi, nodesApi } from '../api/containers';
import { certificatesApi, proxiesApi, specOf, type Certificate, type ProxyHost, type ProxySpec, type UploadedCertificate } from '../api/proxies';
import { useUser } from '../auth';
import { Badge, CheckboxField, ConfirmDialog, Dialog, FormError, Notice, PageHeader, SelectField, TextField, useLoad, usePoll } from '../components/ui';
import { formatTime } from '../format';
import { atLeast } from '../roles';
import { CertificatesSection } from './ProxyCertificates';

/** A 0–100 ring: green from 80, amber from 50, red below. */
export function ScoreRing({ score, reasons }: { score: number; reasons: string[] }) {
  const r = 14;
  const c = 2 * Math.PI * r;
  const color = score >= 80 ? 'var(--ok)' : score >= 50 ? 'var(--warn, #b7791f)' : 'var(--bad, #c53030)';
  const title = reasons.length ? `TLS ${score}/100: ${reasons.join('; ')}` : `TLS ${score}/100`;
  return (
    <span className="score-ring" title={title} data-testid="tls-score">
      <svg width="36" height="36" viewBox="0 0 36 36" role="img" aria-label={title}>
        <circle cx="18" cy="18" r={r} fill="none" stroke="currentColor" strokeOpacity="0.15" strokeWidth="4" />
        <circle
          cx="18"
          cy="18"
          r={r}
          fill="none"
          stroke={color}
          strokeWidth="4"
          strokeDasharray={`${(score / 100) * c} ${c}`}
          transform="rotate(-90 18 18)"
        />
        <text x="18" y="22" textAnchor="middle" fontSize="11" fill="currentColor">
          {score}
        </text>
      </svg>
    </span>
  );
}

function StatusBadge({ h }: { h: ProxyHost }) {
  if (h.apply_status === 'applied') return <Badge kind="ok">Applied</Badge>;
  if (h.apply_status === 'failed') return <Badge kind="bad">Failed</Badge>;
  return <Badge kind="warn">Pending</Badge>;
}

function CertCell({ cert, tls }: { cert?: Certificate | null; tls: boolean }) {
  if (!tls) return <span className="muted">HTTP only</span>;
  if (!cert) return <span className="muted">Waiting for the node</span>;
  const days = Math.floor((Date.parse(cert.not_after) - Date.now()) / 86_400_000);
  return (
    <div className="cert-cell">
      <ScoreRing score={cert.tls_score} reasons={cert.tls_reasons} />
      <div>
        <div>
          {cert.source === 'placeholder' ? (
            <Badge kind="warn">Placeholder</Badge>
          ) : (
            <>
              {cert.issuer} {cert.source === 'uploaded' && <Badge>Uploaded</Badge>}
            </>
          )}
        </div>
        <div className="small muted">
          expires {formatTime(cert.not_after)} ({days} days)
        </div>
        {cert.error && <div className="small error-text">{cert.error}</div>}
      </div>
    </div>
  );
}

function upstreamText(u: ProxySpec['upstream']): string {
  return `${u.scheme === 'https' ? 'https://' : ''}${u.container ?? u.host ?? ''}:${u.port}`;
}

export function ProxiesPage() {
  const me = useUser();
  const admin = atLeast(me.role, 'admin');
  const [params, setParams] = useSearchParams();
  const agents = useLoad(() => nodesApi.agents());
  const live = (agents.data ?? []).filter((a) => !a.revoked);
  const node = params.get('node') ?? live[0]?.id ?? '';
  const hosts = usePoll(() => (node ? proxiesApi.list(node) : Promise.resolve([])), 3000, node);
  const revisions = usePoll(() => (node ? proxiesApi.revisions(node) : Promise.resolve([])), 5000, node);
  const certificates = useLoad(() => certificatesApi.list());
  const [editing, setEditing] = useState<ProxyHost | 'new' | null>(null);
  const [removing, setRemoving] = useState<ProxyHost | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState('');
  const drifted = (hosts.data ?? []).some((h) => h.drift);

  const run = async (label: string, action: () => Promise<unknown>) => {
    setBusy(label);
    setError(null);
    try {
      await action();
      await hosts.reload();
      await revisions.reload();
    } catch (e) {
      setError(toApiError(e));
    } finally {
      setBusy('');
    }
  };

  return (
    <>
      <PageHeader title="Proxy hosts">
        {admin && node && (
          <button type="button" className="btn btn-primary" onClick={() => setEditing('new')}>
            New proxy host
          </button>
        )}
      </PageHeader>
      <div className="toolbar">
        <SelectField label="Node" name="node" value={node} onChange={(e) => setParams({ node: e.target.value })} error={null}>
          {live.map((a) => (
            <option key={a.id} value={a.id}>
              {a.name}
            </option>
          ))}
        </SelectField>
        {node && atLeast(me.role, 'operator') && (
          <button type="button" className="btn" disabled={busy !== ''} onClick={() => run('drift', () => proxiesApi.drift(node))}>
            {busy === 'drift' ? 'Checking…' : 'Check drift'}
          </button>
        )}
        {node && admin && (
          <button type="button" className={drifted ? 'btn btn-primary' : 'btn'} disabled={busy !== ''} onClick={() => run('reapply', () => proxiesApi.reapply(node))}>
            {busy === 'reapply' ? 'Applying…' : 'Re-apply'}
          </button>
        )}
      </div>
      {drifted && (
        <Notice kind="warning">
          <span data-testid="drift-notice">Files on the node differ from what was applied. Re-apply writes them again from the saved configuration.</span>
        </Notice>
      )}
      <FormError error={error ?? hosts.error} />
      <div className="table-wrap">
        <table data-testid="proxies-table">
          <thead>
            <tr>
              <th scope="col">Domains</th>
              <th scope="col">Upstream</th>
              <th scope="col">Status</th>
              <th scope="col">Certificate</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {hosts.data?.map((h) => (
              <tr key={h.id} data-testid="proxy-row">
                <td>
                  {h.domains.join(', ')} {h.drift && <Badge kind="warn">Drift</Badge>}
                </td>
                <td className="mono small">{upstreamText(h.upstream)}</td>
                <td>
                  <StatusBadge h={h} />
                  {h.error && <pre className="nginx-error" data-testid="apply-error">{h.error}</pre>}
                </td>
                <td>
                  <CertCell cert={h.certificate} tls={!!h.tls} />
                </td>
                <td className="actions-cell">
                  {admin && (
                    <div className="row-actions">
                      <button type="button" className="btn btn-small" onClick={() => setEditing(h)}>
                        Edit
                      </button>
                      <button type="button" className="btn btn-small btn-danger" onClick={() => setRemoving(h)} aria-label={`Delete ${h.domains[0]}`}>
                        Delete
                      </button>
                    </div>
                  )}
                </td>
              </tr>
            ))}
            {hosts.data?.length === 0 && (
              <tr>
                <td colSpan={5} className="muted">
                  No proxy hosts on this node yet.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>

      <h2>Revisions</h2>
      <div className="table-wrap">
        <table data-testid="revisions-table">
          <thead>
            <tr>
              <th scope="col">#</th>
              <th scope="col">Change</th>
              <th scope="col">By</th>
              <th scope="col">When</th>
              <th scope="col">Result</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {revisions.data?.map((r, i) => (
              <tr key={r.number}>
                <td>{r.number}</td>
                <td>{r.reason}</td>
                <td>{r.created_by}</td>
                <td>{formatTime(r.created_at)}</td>
                <td>
                  <Badge kind={r.state === 'applied' ? (r.failed_hosts.length ? 'warn' : 'ok') : r.state === 'failed' ? 'bad' : 'neutral'}>{r.state}</Badge>
                  {r.failed_hosts.length > 0 && <span className="small muted"> {r.failed_hosts.length} host(s) left out</span>}
                  {r.duration_ms != null && <span className="small muted"> in {r.duration_ms} ms</span>}
                  {r.error && <pre className="nginx-error">{r.error}</pre>}
                </td>
                <td className="actions-cell">
                  {admin && i > 0 && (
                    <button type="button" className="btn btn-small" disabled={busy !== ''} onClick={() => run(`rollback-${r.number}`, () => proxiesApi.rollback(node, r.number))}>
                      Roll back to #{r.number}
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>

      <CertificatesSection
        certificates={certificates}
        admin={admin}
        onChanged={async () => {
          await certificates.reload();
          await hosts.reload();
          await revisions.reload();
        }}
      />

      <Dialog title={editing === 'new' ? 'New proxy host' : 'Edit proxy host'} open={editing !== null} onClose={() => setEditing(null)} testId="proxy-dialog">
        {editing !== null && (
          <ProxyForm
            agent={node}
            certificates={certificates.data ?? []}
            host={editing === 'new' ? null : editing}
            onCancel={() => setEditing(null)}
            onDone={async () => {
              setEditing(null);
              await hosts.reload();
              await revisions.reload();
              await certificates.reload();
            }}
          />
        )}
      </Dialog>
      <ConfirmDialog
        title="Delete proxy host"
        open={removing !== null}
        onClose={() => setRemoving(null)}
        confirmLabel="Delete"
        message={
          <>
            Stop serving <strong>{removing?.domains.join(', ')}</strong>?
          </>
        }
        onConfirm={async () => {
          if (!removing) return;
          await proxiesApi.remove(node, removing.id);
          await hosts.reload();
          await revisions.reload();
          await certificates.reload();
        }}
      />
    </>
  );
}

const REFERRER = ['', 'no-referrer', 'no-referrer-when-downgrade', 'origin', 'origin-when-cross-origin', 'same-origin', 'strict-origin', 'strict-origin-when-cross-origin', 'unsafe-url'];

/** The proxy host form: the node's containers to pick from, or an address. */
function ProxyForm({
  agent,
  host,
  certificates,
  onDone,
  onCancel,
}: {
  agent: string;
  host: ProxyHost | null;
  certificates: UploadedCertificate[];
  onDone: () => Promise<void>;
  onCancel: () => void;
}) {
  const spec = host ? specOf(host) : null;
  const containers = useLoad(() => containersApi.list(agent, false));
  const [domains, setDomains] = useState(spec?.domains.join('\n') ?? '');
  const [kind, setKind] = useState<'container' | 'host'>(spec?.upstream.host ? 'host' : 'container');
  const [container, setContainer] = useState(spec?.upstream.container ?? '');
  const [address, setAddress] = useState(spec?.upstream.host ?? '');
  const [port, setPort] = useState(String(spec?.upstream.port ?? 80));
  const [scheme, setScheme] = useState(spec?.upstream.scheme ?? 'http');
  const [websockets, setWebsockets] = useState(spec?.websockets ?? false);
  const [tls, setTls] = useState<'' | 'acme' | 'uploaded'>(spec?.tls ? (spec.tls.mode as 'acme' | 'uploaded') : '');
  const [certificateId, setCertificateId] = useState(spec?.tls?.certificate_id ?? certificates[0]?.id ?? '');
  const [redirect, setRedirect] = useState(spec?.tls?.redirect_http ?? true);
  const [hsts, setHsts] = useState(!!spec?.headers?.hsts);
  const [frame, setFrame] = useState(spec?.headers?.frame_options ?? '');
  const [nosniff, setNosniff] = useState(spec?.headers?.content_type_nosniff ?? false);
  const [referrer, setReferrer] = useState(spec?.headers?.referrer_policy ?? '');
  const [rps, setRps] = useState(spec?.rate_limit ? String(spec.rate_limit.requests_per_second) : '');
  const [burst, setBurst] = useState(spec?.rate_limit ? String(spec.rate_limit.burst) : '');
  const [bodyMb, setBodyMb] = useState(spec?.max_body_bytes != null ? String(spec.max_body_bytes / 1048576) : '');
  const [access, setAccess] = useState((spec?.access ?? []).map((a) => `${a.action} ${a.source}`).join('\n'));
  const [locations, setLocations] = useState(
    (spec?.locations ?? []).map((l) => `${l.path} ${l.upstream.container ?? l.upstream.host}:${l.upstream.port}${l.websockets ? ' ws' : ''}`).join('\n'),
  );
  const [error, setError] = useState<ApiError | null>(null);
  const names = (containers.data?.containers ?? []).map((c) => c.name);
  useEffect(() => {
    if (!host && kind === 'container' && !container && names.length) setContainer(names[0] ?? '');
  }, [names.length]); // eslint-disable-line react-hooks/exhaustive-deps

  const lines = (text: string) => text.split('\n').map((l) => l.trim()).filter(Boolean);
  const build = (): ProxySpec => {
    const csp = spec?.headers?.content_security_policy ?? [];
    return {
      domains: lines(domains.replace(/,/g, '\n')),
      upstream: kind === 'container' ? { container, port: Number(port), scheme } : { host: address.trim(), port: Number(port), scheme },
      websockets,
      locations: lines(locations).map((l) => {
        const [path = '', target = '', ws] = l.split(/\s+/);
        const at = target.lastIndexOf(':');
        const name = at > 0 ? target.slice(0, at) : target;
        const p = Number(at > 0 ? target.slice(at + 1) : 80);
        const upstream = names.includes(name) ? { container: name, port: p, scheme: 'http' } : { host: name, port: p, scheme: 'http' };
        return { path, upstream, websockets: ws === 'ws' };
      }),
      headers: {
        hsts: hsts ? { max_age_seconds: 31536000, include_subdomains: false } : null,
        content_security_policy: csp,
        frame_options: frame || null,
        content_type_nosniff: nosniff,
        referrer_policy: referrer || null,
      },
      rate_limit: rps ? { requests_per_second: Number(rps), burst: Number(burst || 0) } : null,
      max_body_bytes: bodyMb ? Math.round(Number(bodyMb) * 1048576) : null,
      access: lines(access).map((l) => {
        const [action = '', source = ''] = l.split(/\s+/);
        return { action, source };
      }),
      tls: tls === 'uploaded' ? { mode: 'uploaded', certificate_id: certificateId, redirect_http: redirect } : tls === 'acme' ? { mode: 'acme', redirect_http: redirect } : null,
    };
  };

  return (
    <form
      onSubmit={async (e) => {
        e.preventDefault();
        setError(null);
        try {
          if (host) await proxiesApi.update(agent, host.id, build());
          else await proxiesApi.create(agent, build());
          await onDone();
        } catch (err) {
          setError(toApiError(err));
        }
      }}
    >
      <FormError error={error} />
      <div className={error?.field?.startsWith('domains') ? 'field field-invalid' : 'field'}>
        <label htmlFor="proxy-domains">Domains (one per line)</label>
        <textarea id="proxy-domains" name="domains" rows={2} value={domains} onChange={(e) => setDomains(e.target.value)} required />
      </div>
      <fieldset>
        <legend>Upstream</legend>
        <SelectField label="Send requests to" name="upstream.kind" value={kind} onChange={(e) => setKind(e.target.value as 'container' | 'host')} error={error}>
          <option value="container">A container on this node</option>
          <option value="host">An address (host:port)</option>
        </SelectField>
        {kind === 'container' ? (
          <SelectField label="Container" name="upstream.container" value={container} onChange={(e) => setContainer(e.target.value)} error={error}>
            {names.map((n) => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
          </SelectField>
        ) : (
          <TextField label="Host or IP" name="upstream.host" value={address} onChange={(e) => setAddress(e.target.value)} error={error} />
        )}
        <TextField label="Port" name="upstream.port" type="number" min={1} max={65535} value={port} onChange={(e) => setPort(e.target.value)} error={error} />
        <SelectField label="Scheme" name="upstream.scheme" value={scheme} onChange={(e) => setScheme(e.target.value as typeof scheme)} error={error}>
          <option value="http">http</option>
          <option value="https">https</option>
        </SelectField>
        <CheckboxField label="WebSockets" name="websockets" checked={websockets} onChange={setWebsockets} />
      </fieldset>
      <div className={error?.field?.startsWith('locations') ? 'field field-invalid' : 'field'}>
        <label htmlFor="proxy-locations">Custom locations (one per line: /path target:port, add "ws" for WebSockets)</label>
        <textarea id="proxy-locations" name="locations" rows={2} value={locations} onChange={(e) => setLocations(e.target.value)} />
      </div>
      <fieldset>
        <legend>HTTPS</legend>
        <SelectField label="Certificate" name="tls.mode" value={tls} onChange={(e) => setTls(e.target.value as typeof tls)} error={error}>
          <option value="">None (HTTP only)</option>
          <option value="acme">From Let's Encrypt (ACME HTTP-01, renewed by the node)</option>
          <option value="uploaded">An uploaded certificate</option>
        </SelectField>
        {tls === 'uploaded' && (
          <SelectField label="Uploaded certificate" name="tls.certificate_id" value={certificateId} onChange={(e) => setCertificateId(e.target.value)} error={error}>
            {certificates.length === 0 && <option value="">Upload one below first</option>}
            {certificates.map((c) => (
              <option key={c.id} value={c.id}>
                {c.name} ({c.domains.join(', ')})
              </option>
            ))}
          </SelectField>
        )}
        {tls && <CheckboxField label="Redirect HTTP to HTTPS" name="tls.redirect_http" checked={redirect} onChange={setRedirect} />}
        <CheckboxField label="HSTS (one year)" name="headers.hsts" checked={hsts} onChange={setHsts} />
      </fieldset>
      <fieldset>
        <legend>Security headers</legend>
        <SelectField label="X-Frame-Options" name="headers.frame_options" value={frame} onChange={(e) => setFrame(e.target.value)} error={error}>
          <option value="">None</option>
          <option value="DENY">DENY</option>
          <option value="SAMEORIGIN">SAMEORIGIN</option>
        </SelectField>
        <CheckboxField label="X-Content-Type-Options: nosniff" name="headers.content_type_nosniff" checked={nosniff} onChange={setNosniff} />
        <SelectField label="Referrer-Policy" name="headers.referrer_policy" value={referrer} onChange={(e) => setReferrer(e.target.value)} error={error}>
          {REFERRER.map((r) => (
            <option key={r} value={r}>
              {r || 'None'}
            </option>
          ))}
        </SelectField>
      </fieldset>
      <fieldset>
        <legend>Limits and access</legend>
        <TextField label="Requests per second per client (empty: no limit)" name="rate_limit.requests_per_second" type="number" min={1} value={rps} onChange={(e) => setRps(e.target.value)} error={error} />
        <TextField label="Burst" name="rate_limit.burst" type="number" min={0} value={burst} onChange={(e) => setBurst(e.target.value)} error={error} />
        <TextField label="Largest request body, MiB (empty: 1 MiB)" name="max_body_bytes" type="number" min={0} step="any" value={bodyMb} onChange={(e) => setBodyMb(e.target.value)} error={error} />
        <div className={error?.field?.startsWith('access') ? 'field field-invalid' : 'field'}>
          <label htmlFor="proxy-access">Access rules (one per line: allow|deny address/CIDR|all)</label>
          <textarea id="proxy-access" name="access" rows={2} value={access} onChange={(e) => setAccess(e.target.value)} />
        </div>
      </fieldset>
      <div className="actions">
        <button type="button" className="btn" onClick={onCancel}>
          Cancel
        </button>
        <button type="submit" className="btn btn-primary">
          {host ? 'Save and apply' : 'Create and apply'}
        </button>
      </div>
    </form>
  );
}
