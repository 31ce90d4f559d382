// Single sign-on providers of the organisation (admins): a provider plugin with its settings
// (secrets write-only), the group → role mapping and the callback URL to register at the
// identity provider. The sign-in page shows a button per enabled provider.

import { useState } from 'react';
import { ApiError, api, ssoStartUrl, toApiError } from '../api/client';
import { useUser } from '../auth';
import { pluginsApi, type Plugin } from '../api/alerts';
import type { CreateSsoProviderRequest, GroupRoleDto, SsoProviderDto } from '../api/types';
import { Badge, ConfirmDialog, CopyButton, Dialog, FormError, Notice, PageHeader, SelectField, TextField, useLoad } from '../components/ui';
import { SchemaForm, formFromSettings, settingsFromForm } from '../components/SchemaForm';
import { roleLabel } from '../roles';

const MEMBER_ROLES = ['admin', 'operator', 'viewer'] as const;

export function SingleSignOnPage() {
  const user = useUser();
  const providers = useLoad(() => api.ssoProviders());
  const policy = useLoad(() => api.ssoPolicy());
  const [policyError, setPolicyError] = useState<ApiError | null>(null);
  const [savingPolicy, setSavingPolicy] = useState(false);
  async function setRequired(required: boolean) {
    setSavingPolicy(true);
    setPolicyError(null);
    try {
      await api.setSsoPolicy(required);
      await policy.reload();
    } catch (err) {
      setPolicyError(toApiError(err));
    } finally {
      setSavingPolicy(false);
    }
  }
  const plugins = useLoad(() => pluginsApi.list());
  const [editing, setEditing] = useState<SsoProviderDto | 'new' | null>(null);
  const [removing, setRemoving] = useState<SsoProviderDto | null>(null);
  const ssoPlugins = (plugins.data ?? []).filter((p) => p.world === 'sso-provider' && p.enabled);
  const pluginOf = (id: string) => plugins.data?.find((p) => p.id === id);

  return (
    <>
      <PageHeader title="Single sign-on">
        <button type="button" className="btn btn-primary" onClick={() => setEditing('new')} disabled={ssoPlugins.length === 0}>
          New provider
        </button>
      </PageHeader>
      <p className="muted">
        People sign in through your identity provider; their groups there give them a role here at every sign-in. Local accounts
        keep working.
      </p>
      {ssoPlugins.length === 0 && plugins.data && (
        <Notice kind="warning">No single sign-on plugin is enabled: the host operator enables one on the Plugins page.</Notice>
      )}
      <FormError error={providers.error} />
      {policy.data && (
        <div className="card" data-testid="sso-policy">
          <label className="checkbox">
            <input
              type="checkbox"
              checked={policy.data.require_sso}
              disabled={savingPolicy}
              onChange={(e) => void setRequired(e.target.checked)}
            />{' '}
            Require single sign-on
          </label>
          <p className="muted small">
            Members below admin must sign in through a provider here: their password sign-in is refused and their other sessions
            cannot act in this organisation. Admins keep their password and second factor for break-glass.
          </p>
          <FormError error={policyError} />
        </div>
      )}
      <div className="table-wrap">
        <table data-testid="sso-providers-table">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Plugin</th>
              <th scope="col">Groups → roles</th>
              <th scope="col">Status</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {providers.data?.map((p) => (
              <tr key={p.id}>
                <td>{p.name}</td>
                <td>{pluginOf(p.plugin)?.name ?? p.plugin}</td>
                <td className="small">
                  {p.group_roles.map((r) => `${r.group} → ${roleLabel(r.role)}`).join(', ') || '—'}
                  {p.default_role ? ` (others: ${roleLabel(p.default_role)})` : ''}
                  {p.mfa === 'idp' ? '; second factor at the identity provider' : p.mfa === 'local' ? '; second factor on this host' : ''}
                </td>
                <td>{p.enabled ? <Badge kind="ok">Enabled</Badge> : <Badge>Disabled</Badge>}</td>
                <td className="actions-cell">
                  <div className="row-actions">
                    {p.enabled && (
                      <a
                        className="btn btn-small"
                        href={
                          pluginOf(p.plugin)?.sso_login === 'password'
                            ? `/login?org=${encodeURIComponent(user.org_id ?? '')}`
                            : ssoStartUrl(p.id, user.org_id ?? undefined)
                        }
                        target="_blank"
                        rel="noopener"
                        title="Signs in through this provider in a new tab (the tab's own session)"
                      >
                        Test sign-in
                      </a>
                    )}
                    <button type="button" className="btn btn-small" onClick={() => setEditing(p)} aria-label={`Edit ${p.name}`}>
                      Edit
                    </button>
                    <button type="button" className="btn btn-small btn-danger" onClick={() => setRemoving(p)} aria-label={`Delete ${p.name}`}>
                      Delete
                    </button>
                  </div>
                </td>
              </tr>
            ))}
            {providers.data?.length === 0 && (
              <tr>
                <td colSpan={5} className="muted">
                  No providers yet.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      <Dialog
        title={editing === 'new' ? 'New single sign-on provider' : `Edit ${editing?.name ?? ''}`}
        open={editing !== null}
        onClose={() => setEditing(null)}
        testId="sso-provider-dialog"
      >
        {editing !== null && (
          <ProviderForm
            provider={editing === 'new' ? null : editing}
            plugins={editing === 'new' ? ssoPlugins : (plugins.data ?? [])}
            onCancel={() => setEditing(null)}
            onDone={async () => {
              setEditing(null);
              await providers.reload();
            }}
          />
        )}
      </Dialog>
      <ConfirmDialog
        title="Delete provider"
        open={removing !== null}
        onClose={() => setRemoving(null)}
        confirmLabel="Delete provider"
        message={
          <>
            Delete <strong>{removing?.name}</strong>? Its people keep their accounts and memberships but can no longer sign in
            through it.
          </>
        }
        onConfirm={async () => {
          if (!removing) return;
          await api.deleteSsoProvider(removing.id);
          await providers.reload();
        }}
      />
    </>
  );
}

function ProviderForm({
  provider,
  plugins,
  onDone,
  onCancel,
}: {
  provider: SsoProviderDto | null;
  plugins: Plugin[];
  onDone: () => Promise<void>;
  onCancel: () => void;
}) {
  const [pluginId, setPluginId] = useState(provider?.plugin ?? plugins[0]?.id ?? '');
  const plugin = plugins.find((p) => p.id === pluginId);
  const [name, setName] = useState(provider?.name ?? '');
  const [values, setValues] = useState<Record<string, string>>(() =>
    plugin ? formFromSettings(plugin.settings_schema, (provider?.settings as Record<string, unknown>) ?? {}) : {},
  );
  const [rules, setRules] = useState<GroupRoleDto[]>(provider?.group_roles ?? [{ group: '', role: 'viewer' }]);
  const [defaultRole, setDefaultRole] = useState(provider?.default_role ?? '');
  const [enabled, setEnabled] = useState(provider?.enabled ?? true);
  const [mfa, setMfa] = useState(provider?.mfa ?? 'none');
  const [acrValues, setAcrValues] = useState((provider?.mfa_acr_values ?? []).join('\n'));
  const [error, setError] = useState<ApiError | null>(null);
  const directory = plugin?.sso_login === 'password';
  const [busy, setBusy] = useState(false);

  const setRule = (i: number, change: Partial<GroupRoleDto>) =>
    setRules((rs) => rs.map((r, j) => (j === i ? { ...r, ...change } : r)));

  return (
    <form
      data-testid="sso-provider-form"
      onSubmit={async (e) => {
        e.preventDefault();
        if (!plugin) return;
        setBusy(true);
        setError(null);
        // The document types settings as a bare object; the plugin's schema says what is in it.
        const settings = settingsFromForm(plugin.settings_schema, values, provider?.secrets_set ?? []) as CreateSsoProviderRequest['settings'];
        const group_roles = rules.filter((r) => r.group.trim() !== '').map((r) => ({ group: r.group.trim(), role: r.role }));
        // Kept as stored unless the identity provider's check is chosen (a policy switch keeps them).
        const mfa_acr_values = mfa === 'idp' ? acrValues.split('\n').map((v) => v.trim()).filter((v) => v !== '') : undefined;
        try {
          if (provider) {
            await api.updateSsoProvider(provider.id, {
              name: name.trim(),
              settings,
              group_roles,
              default_role: defaultRole || null,
              enabled,
              mfa,
              mfa_acr_values,
            });
          } else {
            await api.createSsoProvider({
              plugin: plugin.id,
              name: name.trim(),
              settings,
              group_roles,
              default_role: defaultRole || null,
              enabled,
              mfa,
              mfa_acr_values,
            });
          }
          await onDone();
        } catch (err) {
          setError(toApiError(err));
        } finally {
          setBusy(false);
        }
      }}
    >
      <FormError error={error} />
      {!provider && (
        <SelectField
          label="Plugin"
          name="plugin"
          value={pluginId}
          onChange={(e) => {
            setPluginId(e.target.value);
            setValues({});
            // A directory reports no second factor: its sign-ins cannot be checked for one.
            if (plugins.find((p) => p.id === e.target.value)?.sso_login === 'password' && mfa === 'idp') setMfa('none');
          }}
          error={error}
        >
          {plugins.map((p) => (
            <option key={p.id} value={p.id}>
              {p.name}
            </option>
          ))}
        </SelectField>
      )}
      <TextField label="Name" name="name" value={name} onChange={(e) => setName(e.target.value)} required hint="Shown on the sign-in button." error={error} />
      {provider && (
        <div className="field">
          <span className="block-label">Callback URL to register at the identity provider</span>
          <div className="secret-line">
            <code data-testid="sso-callback-url">{provider.callback_url}</code>
            <CopyButton text={provider.callback_url} />
          </div>
        </div>
      )}
      {provider?.saml_metadata_url && (
        <div className="field">
          <span className="block-label">SAML metadata of this provider (its entity id; give it to the identity provider)</span>
          <div className="secret-line">
            <code data-testid="sso-saml-metadata-url">{provider.saml_metadata_url}</code>
            <CopyButton text={provider.saml_metadata_url} />
          </div>
        </div>
      )}
      {plugin && (
        <SchemaForm schema={plugin.settings_schema} values={values} onChange={setValues} error={error} secretsSet={provider?.secrets_set ?? []} />
      )}
      <fieldset className="group-roles">
        <legend>Groups → roles</legend>
        <p className="muted small">A person gets the highest role of their mapped groups, again at every sign-in.</p>
        {rules.map((r, i) => (
          <div key={i} className="group-role-row">
            <input
              aria-label={`Group ${i + 1}`}
              value={r.group}
              placeholder="group name at the identity provider"
              onChange={(e) => setRule(i, { group: e.target.value })}
            />
            <select aria-label={`Role of group ${i + 1}`} value={r.role} onChange={(e) => setRule(i, { role: e.target.value })}>
              {MEMBER_ROLES.map((role) => (
                <option key={role} value={role}>
                  {roleLabel(role)}
                </option>
              ))}
            </select>
            <button type="button" className="btn btn-small" aria-label={`Remove group ${i + 1}`} onClick={() => setRules((rs) => rs.filter((_, j) => j !== i))}>
              ×
            </button>
          </div>
        ))}
        <button type="button" className="btn btn-small" onClick={() => setRules((rs) => [...rs, { group: '', role: 'viewer' }])}>
          Add a group
        </button>
      </fieldset>
      <SelectField label="Everyone else" name="default_role" value={defaultRole} onChange={(e) => setDefaultRole(e.target.value)} error={error}>
        <option value="">is refused</option>
        {MEMBER_ROLES.map((role) => (
          <option key={role} value={role}>
            gets {roleLabel(role)}
          </option>
        ))}
      </SelectField>
      <SelectField
        label="Second factor"
        name="mfa"
        value={mfa}
        onChange={(e) => setMfa(e.target.value)}
        error={error}
        hint={
          mfa === 'idp'
            ? 'Sign-ins the identity provider reports no second factor for (amr, acr or the SAML authentication context) are refused.'
            : mfa === 'local'
              ? "After the identity provider, this host's authenticator code; a person without one sets it up at that sign-in."
              : undefined
        }
      >
        <option value="none">the identity provider's sign-in is enough</option>
        {!directory && <option value="idp">required at the identity provider</option>}
        <option value="local">required on this host (TOTP)</option>
      </SelectField>
      {mfa === 'idp' && (
        <label className="field">
          <span className="block-label">Further acr values that mean a second factor (one per line)</span>
          <textarea
            name="mfa_acr_values"
            rows={2}
            value={acrValues}
            onChange={(e) => setAcrValues(e.target.value)}
            placeholder="e.g. 2 (Keycloak's level), or an authentication context class"
          />
        </label>
      )}
      <label className="checkbox">
        <input type="checkbox" checked={enabled} onChange={(e) => setEnabled(e.target.checked)} /> Enabled (shown on the sign-in page)
      </label>
      <div className="actions">
        <button type="button" className="btn" onClick={onCancel}>
          Cancel
        </button>
        <button type="submit" className="btn btn-primary" disabled={busy || !plugin}>
          {provider ? 'Save' : 'Create provider'}
        </button>
      </div>
    </form>
  );
}
