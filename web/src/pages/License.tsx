import { useState } from 'react';
import { ApiError, toApiError } from '../api/client';
import { pluginsApi } from '../api/alerts';
import { useUser } from '../auth';
import { Badge, FormError, Notice, PageHeader, useLoad } from '../components/ui';
import { formatTime } from '../format';
import { atLeast } from '../roles';

export function LicensePage() {
  const me = useUser();
  const license = useLoad(() => pluginsApi.license());
  const [text, setText] = useState('');
  const [error, setError] = useState<ApiError | null>(null);
  const [saved, setSaved] = useState(false);
  const l = license.data;
  return (
    <>
      <PageHeader title="Licence" />
      <FormError error={license.error} />
      {l && (
        <dl className="facts" data-testid="license-status">
          <dt>Edition</dt>
          <dd>{l.edition}</dd>
          <dt>Status</dt>
          <dd>{l.valid ? <Badge kind="ok">Valid</Badge> : <Badge kind="warn">Not valid</Badge>} {l.problem && <span className="muted">{l.problem}</span>}</dd>
          <dt>Licensee</dt>
          <dd>{l.licensee ?? '—'}</dd>
          <dt>Features</dt>
          <dd>{l.features.length ? l.features.join(', ') : '—'}</dd>
          <dt>Limits</dt>
          <dd>{Object.entries(l.limits).map(([k, v]) => `${k}: ${v}`).join(', ') || '—'}</dd>
          <dt>Expires</dt>
          <dd title={l.expires_at ?? undefined}>{l.expires_at ? formatTime(l.expires_at) : '—'}</dd>
        </dl>
      )}
      <p className="muted">Licences are verified offline against the vendor's public key; nothing is sent anywhere.</p>
      {atLeast(me.role, 'super_admin') && (
        <form
          onSubmit={async (e) => {
            e.preventDefault();
            setError(null);
            setSaved(false);
            try {
              await pluginsApi.uploadLicense(text);
              setText('');
              setSaved(true);
              await license.reload();
            } catch (err) {
              setError(toApiError(err));
            }
          }}
        >
          {saved && <Notice kind="success">Licence installed.</Notice>}
          <FormError error={error} />
          <div className={`field${error?.field === 'license' ? ' field-invalid' : ''}`}>
            <label htmlFor="license-text">Upload a licence (paste the file's contents)</label>
            <textarea id="license-text" name="license" rows={5} value={text} onChange={(e) => setText(e.target.value)} required />
          </div>
          <div className="actions">
            <button type="submit" className="btn btn-primary">
              Install licence
            </button>
          </div>
        </form>
      )}
    </>
  );
}
