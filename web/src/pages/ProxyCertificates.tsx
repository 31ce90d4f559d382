// Uploaded certificates for proxy hosts: list (names, issuer, expiry, which hosts use them),
// upload and replace (PEM pasted or read from files; the key is write-only), delete.

import { useState } from 'react';
import { ApiError, toApiError } from '../api/client';
import { certificatesApi, type UploadedCertificate } from '../api/proxies';
import { Badge, ConfirmDialog, Dialog, FormError, Notice, TextField, type Loaded } from '../components/ui';
import { warningText } from '../api/policies';
import { formatTime } from '../format';

function daysLeft(iso: string): number {
  return Math.floor((Date.parse(iso) - Date.now()) / 86_400_000);
}

/** A PEM text area that can also read a file. */
function PemField({ label, name, value, onChange, error }: { label: string; name: string; value: string; onChange: (v: string) => void; error: ApiError | null }) {
  const invalid = error?.field === name;
  return (
    <div className={invalid ? 'field field-invalid' : 'field'}>
      <label htmlFor={`pem-${name}`}>{label}</label>
      <textarea id={`pem-${name}`} name={name} rows={5} className="mono small" value={value} spellCheck={false} aria-invalid={invalid || undefined} onChange={(e) => onChange(e.target.value)} />
      <input
        type="file"
        accept=".pem,.crt,.key,.cer,text/plain"
        aria-label={`Read from a file: ${label}`}
        onChange={async (e) => {
          const file = e.target.files?.[0];
          if (file) onChange(await file.text());
        }}
      />
    </div>
  );
}

function UploadForm({ existing, onDone, onCancel }: { existing: UploadedCertificate | null; onDone: (warning: string) => Promise<void>; onCancel: () => void }) {
  const [name, setName] = useState(existing?.name ?? '');
  const [chain, setChain] = useState('');
  const [key, setKey] = useState('');
  const [error, setError] = useState<ApiError | null>(null);
  return (
    <form
      onSubmit={async (e) => {
        e.preventDefault();
        setError(null);
        const body = { name, certificate_pem: chain, private_key_pem: key };
        try {
          const saved = existing ? await certificatesApi.replace(existing.id, body) : await certificatesApi.upload(body);
          await onDone(warningText(saved.warnings).trim());
        } catch (err) {
          setError(toApiError(err));
        }
      }}
    >
      <FormError error={error} />
      {existing && <p className="small muted">Every proxy host using it is applied again with the new certificate, which must cover their domains.</p>}
      <TextField label="Name" name="name" value={name} onChange={(e) => setName(e.target.value)} error={error} required />
      <PemField label="Certificate chain (PEM: the server's certificate first)" name="certificate_pem" value={chain} onChange={setChain} error={error} />
      <PemField label="Private key (PEM, unencrypted; stored encrypted, never shown again)" name="private_key_pem" value={key} onChange={setKey} error={error} />
      <div className="actions">
        <button type="button" className="btn" onClick={onCancel}>
          Cancel
        </button>
        <button type="submit" className="btn btn-primary">
          {existing ? 'Replace and apply' : 'Upload'}
        </button>
      </div>
    </form>
  );
}

/** The organisation's uploaded certificates, with upload, replace and delete for admins. */
export function CertificatesSection({ certificates, admin, onChanged }: { certificates: Loaded<UploadedCertificate[]>; admin: boolean; onChanged: () => Promise<void> }) {
  const [editing, setEditing] = useState<UploadedCertificate | 'new' | null>(null);
  const [removing, setRemoving] = useState<UploadedCertificate | null>(null);
  const [warning, setWarning] = useState('');
  return (
    <>
      <div className="section-header">
        <h2>Uploaded certificates</h2>
        {admin && (
          <button type="button" className="btn" onClick={() => setEditing('new')}>
            Upload certificate
          </button>
        )}
      </div>
      <FormError error={certificates.error} />
      {warning && <Notice kind="warning">{warning}</Notice>}
      <div className="table-wrap">
        <table data-testid="certificates-table">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Names</th>
              <th scope="col">Issuer</th>
              <th scope="col">Expires</th>
              <th scope="col">Used by</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {certificates.data?.map((c) => {
              const days = daysLeft(c.expires_at);
              return (
                <tr key={c.id} data-testid="certificate-row">
                  <td>{c.name}</td>
                  <td className="mono small">{c.domains.join(', ')}</td>
                  <td>{c.issuer}</td>
                  <td>
                    {formatTime(c.expires_at)} <Badge kind={days < 14 ? 'bad' : days < 30 ? 'warn' : 'ok'}>{days} days</Badge>
                  </td>
                  <td>{c.used_by.length ? c.used_by.map((u) => u.domains[0]).join(', ') : <span className="muted">No host</span>}</td>
                  <td className="actions-cell">
                    {admin && (
                      <div className="row-actions">
                        <button type="button" className="btn btn-small" onClick={() => setEditing(c)}>
                          Replace
                        </button>
                        <button type="button" className="btn btn-small btn-danger" onClick={() => setRemoving(c)} aria-label={`Delete certificate ${c.name}`}>
                          Delete
                        </button>
                      </div>
                    )}
                  </td>
                </tr>
              );
            })}
            {certificates.data?.length === 0 && (
              <tr>
                <td colSpan={6} className="muted">
                  No uploaded certificates. Hosts get theirs from Let's Encrypt unless you upload one (a wildcard, or one from your own CA).
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      <Dialog title={editing === 'new' ? 'Upload certificate' : `Replace ${editing?.name ?? ''}`} open={editing !== null} onClose={() => setEditing(null)} testId="certificate-dialog">
        {editing !== null && (
          <UploadForm
            existing={editing === 'new' ? null : editing}
            onCancel={() => setEditing(null)}
            onDone={async (warned) => {
              setEditing(null);
              setWarning(warned);
              await onChanged();
            }}
          />
        )}
      </Dialog>
      <ConfirmDialog
        title="Delete certificate"
        open={removing !== null}
        onClose={() => setRemoving(null)}
        confirmLabel="Delete"
        message={
          <>
            Delete <strong>{removing?.name}</strong>? Hosts that use it must be changed first.
          </>
        }
        onConfirm={async () => {
          if (!removing) return;
          await certificatesApi.remove(removing.id);
          await onChanged();
        }}
      />
    </>
  );
}
