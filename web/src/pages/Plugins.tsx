import { useRef, useState } from 'react';
import { ApiError, toApiError } from '../api/client';
import { capabilityNames, pluginsApi, type Capabilities, type Plugin } from '../api/alerts';
import { useUser } from '../auth';
import { Badge, CheckboxField, ConfirmDialog, Dialog, FormError, Notice, PageHeader, useLoad } from '../components/ui';
import { atLeast } from '../roles';

const SIMPLE = ['log', 'config', 'secrets', 'mail', 'kv', 'clock', 'random'] as const;

export function PluginsPage() {
  const me = useUser();
  const admin = atLeast(me.role, 'super_admin');
  const plugins = useLoad(() => pluginsApi.list());
  const [error, setError] = useState<ApiError | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [granting, setGranting] = useState<Plugin | null>(null);
  const [removing, setRemoving] = useState<Plugin | null>(null);
  const file = useRef<HTMLInputElement>(null);

  async function run(action: () => Promise<unknown>, done: string) {
    setError(null);
    setNotice(null);
    try {
      await action();
      setNotice(done);
      await plugins.reload();
    } catch (e) {
      setError(toApiError(e));
    }
  }

  return (
    <>
      <PageHeader title="Plugins">
        {admin && (
          <>
            <input
              ref={file}
              type="file"
              accept=".bundle,.tar,application/x-tar"
              className="visually-hidden"
              data-testid="bundle-input"
              onChange={(e) => {
                const f = e.target.files?.[0];
                if (f) void run(() => pluginsApi.install(f), `Installed ${f.name}.`);
                e.target.value = '';
              }}
            />
            <button type="button" className="btn btn-primary" onClick={() => file.current?.click()}>
              Install bundle…
            </button>
          </>
        )}
      </PageHeader>
      <p className="muted">
        WebAssembly plugins run with only the capabilities you grant. Bundles must be signed by a trusted publisher key.
      </p>
      {notice && <Notice kind="success">{notice}</Notice>}
      <FormError error={error ?? plugins.error} />
      <div className="table-wrap">
        <table data-testid="plugins-table">
          <thead>
            <tr>
              <th scope="col">Plugin</th>
              <th scope="col">Version</th>
              <th scope="col">World</th>
              <th scope="col">Edition</th>
              <th scope="col">Signature</th>
              <th scope="col">Capabilities</th>
              <th scope="col">Status</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {plugins.data?.map((p) => (
              <tr key={p.id} data-testid={`plugin-${p.id}`}>
                <td>
                  <strong>{p.name}</strong>
                  <div className="muted small">{p.id}</div>
                  <div className="small">{p.description}</div>
                </td>
                <td>{p.version}</td>
                <td>{p.world}</td>
                <td>
                  {p.edition === 'enterprise' ? <Badge kind={p.entitled ? 'ok' : 'warn'}>Enterprise · {p.feature}</Badge> : 'Community'}
                  {p.entitlement_error && <div className="small muted">{p.entitlement_error}</div>}
                </td>
                <td>{p.signed ? <Badge kind="ok">Signed {p.signed_by}</Badge> : <Badge kind="bad">Unsigned</Badge>}</td>
                <td className="small">
                  {(p.enabled ? capabilityNames(p.granted) : capabilityNames(p.requested)).join(', ') || 'none'}
                  {!p.enabled && <div className="muted">requested</div>}
                </td>
                <td>{p.enabled ? <Badge kind="ok">Enabled</Badge> : <Badge>Disabled</Badge>}</td>
                <td className="actions-cell">
                  {admin && (
                    <div className="row-actions">
                      {p.enabled ? (
                        <button type="button" className="btn btn-small" onClick={() => void run(() => pluginsApi.disable(p.id), `Disabled ${p.name}.`)}>
                          Disable
                        </button>
                      ) : (
                        <button type="button" className="btn btn-small btn-primary" onClick={() => setGranting(p)} aria-label={`Enable ${p.name}`}>
                          Enable…
                        </button>
                      )}
                      <button type="button" className="btn btn-small btn-danger" onClick={() => setRemoving(p)} aria-label={`Uninstall ${p.name}`}>
                        Uninstall
                      </button>
                    </div>
                  )}
                </td>
              </tr>
            ))}
            {plugins.data?.length === 0 && (
              <tr>
                <td colSpan={8} className="muted">
                  No plugins installed.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      <Dialog title={`Enable ${granting?.name ?? ''}`} open={granting !== null} onClose={() => setGranting(null)} testId="grant-dialog">
        {granting && (
          <GrantForm
            plugin={granting}
            onCancel={() => setGranting(null)}
            onGrant={async (grants) => {
              await pluginsApi.enable(granting.id, grants);
              setGranting(null);
              setNotice(`Enabled ${granting.name}.`);
              await plugins.reload();
            }}
          />
        )}
      </Dialog>
      <ConfirmDialog
        title="Uninstall plugin"
        open={removing !== null}
        onClose={() => setRemoving(null)}
        confirmLabel="Uninstall"
        message={
          <>
            Uninstall <strong>{removing?.name}</strong> and delete its stored data?
          </>
        }
        onConfirm={async () => {
          if (!removing) return;
          await pluginsApi.uninstall(removing.id);
          await plugins.reload();
        }}
      />
    </>
  );
}

/** The operator's grant: each requested capability, on by default, can be withheld; HTTP hosts can be narrowed. */
function GrantForm({ plugin, onGrant, onCancel }: { plugin: Plugin; onGrant: (g: Capabilities) => Promise<void>; onCancel: () => void }) {
  const [grants, setGrants] = useState<Capabilities>(plugin.requested);
  const [hosts, setHosts] = useState((plugin.requested.http?.hosts ?? []).join('\n'));
  const [error, setError] = useState<ApiError | null>(null);
  return (
    <form
      onSubmit={async (e) => {
        e.preventDefault();
        setError(null);
        const list = hosts
          .split('\n')
          .map((h) => h.trim())
          .filter(Boolean);
        try {
          await onGrant({ ...grants, http: grants.http && list.length ? { hosts: list } : undefined });
        } catch (err) {
          setError(toApiError(err));
        }
      }}
    >
      <FormError error={error} />
      <p className="muted">The plugin gets what it requests and you grant, nothing more.</p>
      {SIMPLE.filter((k) => plugin.requested[k]).map((k) => (
        <CheckboxField key={k} label={k} name={`grants.${k}`} checked={!!grants[k]} onChange={(v) => setGrants({ ...grants, [k]: v })} error={error} />
      ))}
      {plugin.requested.http && (
        <>
          <CheckboxField label="http" name="grants.http" checked={!!grants.http} onChange={(v) => setGrants({ ...grants, http: v ? plugin.requested.http : undefined })} error={error} />
          {grants.http && (
            <div className="field">
              <label htmlFor="grant-hosts">Hosts it may reach (one per line; * for any public host)</label>
              <textarea id="grant-hosts" name="grants.http.hosts" rows={3} value={hosts} onChange={(e) => setHosts(e.target.value)} />
            </div>
          )}
        </>
      )}
      <div className="actions">
        <button type="button" className="btn" onClick={onCancel}>
          Cancel
        </button>
        <button type="submit" className="btn btn-primary">
          Grant and enable
        </button>
      </div>
    </form>
  );
}
