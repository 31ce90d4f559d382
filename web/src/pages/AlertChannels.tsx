import { useState } from 'react';
import { ApiError, toApiError } from '../api/client';
import { alertsApi, pluginsApi, type Channel, type Plugin, type TestResult } from '../api/alerts';
import { useUser } from '../auth';
import { Badge, ConfirmDialog, Dialog, FormError, Notice, PageHeader, SelectField, TextField, useLoad } from '../components/ui';
import { SchemaForm, formFromSettings, settingsFromForm } from '../components/SchemaForm';
import { atLeast } from '../roles';

export function AlertChannelsPage() {
  const me = useUser();
  const admin = atLeast(me.role, 'admin');
  const channels = useLoad(() => alertsApi.channels());
  const plugins = useLoad(() => pluginsApi.list());
  const [editing, setEditing] = useState<Channel | 'new' | null>(null);
  const [removing, setRemoving] = useState<Channel | null>(null);
  const [tests, setTests] = useState<Record<string, TestResult | 'sending'>>({});
  const [error, setError] = useState<ApiError | null>(null);
  const channelPlugins = (plugins.data ?? []).filter((p) => p.world === 'alert-channel' && p.enabled);
  const pluginOf = (id: string) => plugins.data?.find((p) => p.id === id);

  async function test(c: Channel) {
    setTests((t) => ({ ...t, [c.id]: 'sending' }));
    try {
      const result = await alertsApi.testChannel(c.id);
      setTests((t) => ({ ...t, [c.id]: result }));
    } catch (e) {
      setError(toApiError(e));
      setTests((t) => {
        const { [c.id]: _, ...rest } = t;
        return rest;
      });
    }
  }

  return (
    <>
      <PageHeader title="Alert channels">
        {admin && (
          <button type="button" className="btn btn-primary" onClick={() => setEditing('new')} disabled={channelPlugins.length === 0}>
            New channel
          </button>
        )}
      </PageHeader>
      {admin && channelPlugins.length === 0 && plugins.data && (
        <Notice kind="warning">No alert-channel plugin is enabled: enable one on the Plugins page first.</Notice>
      )}
      <FormError error={error ?? channels.error} />
      <div className="table-wrap">
        <table data-testid="channels-table">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Plugin</th>
              <th scope="col">Status</th>
              <th scope="col">Last test</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {channels.data?.map((c) => {
              const t = tests[c.id];
              return (
                <tr key={c.id} data-testid={`channel-${c.name}`}>
                  <td>{c.name}</td>
                  <td>{pluginOf(c.plugin)?.name ?? c.plugin}</td>
                  <td>{c.enabled ? <Badge kind="ok">Enabled</Badge> : <Badge>Disabled</Badge>}</td>
                  <td data-testid="test-result">
                    {t === 'sending' && 'Sending…'}
                    {t && t !== 'sending' && (
                      <>
                        <Badge kind={t.delivered ? 'ok' : 'bad'}>{t.delivered ? 'Delivered' : 'Failed'}</Badge> <span className="small">{t.detail}</span>
                      </>
                    )}
                  </td>
                  <td className="actions-cell">
                    {admin && (
                      <div className="row-actions">
                        <button type="button" className="btn btn-small" onClick={() => void test(c)} aria-label={`Send test to ${c.name}`}>
                          Send test
                        </button>
                        <button type="button" className="btn btn-small" onClick={() => setEditing(c)} aria-label={`Edit ${c.name}`}>
                          Edit
                        </button>
                        <button type="button" className="btn btn-small btn-danger" onClick={() => setRemoving(c)} aria-label={`Delete ${c.name}`}>
                          Delete
                        </button>
                      </div>
                    )}
                  </td>
                </tr>
              );
            })}
            {channels.data?.length === 0 && (
              <tr>
                <td colSpan={5} className="muted">
                  No channels yet.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      <Dialog title={editing === 'new' ? 'New alert channel' : `Edit ${editing?.name ?? ''}`} open={editing !== null} onClose={() => setEditing(null)} testId="channel-dialog">
        {editing !== null && (
          <ChannelForm
            channel={editing === 'new' ? null : editing}
            plugins={editing === 'new' ? channelPlugins : (plugins.data ?? [])}
            onCancel={() => setEditing(null)}
            onDone={async () => {
              setEditing(null);
              await channels.reload();
            }}
          />
        )}
      </Dialog>
      <ConfirmDialog
        title="Delete channel"
        open={removing !== null}
        onClose={() => setRemoving(null)}
        confirmLabel="Delete channel"
        message={
          <>
            Delete <strong>{removing?.name}</strong>? Rules stop notifying it.
          </>
        }
        onConfirm={async () => {
          if (!removing) return;
          await alertsApi.deleteChannel(removing.id);
          await channels.reload();
        }}
      />
    </>
  );
}

function ChannelForm({ channel, plugins, onDone, onCancel }: { channel: Channel | null; plugins: Plugin[]; onDone: () => Promise<void>; onCancel: () => void }) {
  const [pluginId, setPluginId] = useState(channel?.plugin ?? plugins[0]?.id ?? '');
  const plugin = plugins.find((p) => p.id === pluginId);
  const [name, setName] = useState(channel?.name ?? '');
  const [values, setValues] = useState<Record<string, string>>(() => (plugin ? formFromSettings(plugin.settings_schema, channel?.settings ?? {}) : {}));
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  return (
    <form
      onSubmit={async (e) => {
        e.preventDefault();
        if (!plugin) return;
        setBusy(true);
        setError(null);
        const settings = settingsFromForm(plugin.settings_schema, values, channel?.secrets_set ?? []);
        try {
          if (channel) await alertsApi.updateChannel(channel.id, { name: name.trim(), settings });
          else await alertsApi.createChannel(plugin.id, name.trim(), settings);
          await onDone();
        } catch (err) {
          setError(toApiError(err));
        } finally {
          setBusy(false);
        }
      }}
    >
      <FormError error={error} />
      {!channel && (
        <SelectField
          label="Plugin"
          name="plugin"
          value={pluginId}
          onChange={(e) => {
            setPluginId(e.target.value);
            setValues({});
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
      <TextField label="Name" name="name" value={name} onChange={(e) => setName(e.target.value)} required error={error} />
      {plugin && <SchemaForm schema={plugin.settings_schema} values={values} onChange={setValues} error={error} secretsSet={channel?.secrets_set ?? []} />}
      <div className="actions">
        <button type="button" className="btn" onClick={onCancel}>
          Cancel
        </button>
        <button type="submit" className="btn btn-primary" disabled={busy || !plugin}>
          {channel ? 'Save' : 'Create channel'}
        </button>
      </div>
    </form>
  );
}
