// The "New container" form of a node's page: a typed spec (image, name, command, env, ports,
// mounts, user, restart policy, healthcheck, labels, networks, limits), sent to
// POST /agents/{id}/containers with the image pull's progress shown as it streams.

import { useState } from 'react';
import { ApiError, toApiError } from '../api/client';
import { containersApi } from '../api/containers';
import { CheckboxField, Dialog, FormError, SelectField, TextField } from './ui';

interface Progress {
  status: string;
  layer?: string | null;
  current?: number | null;
  total?: number | null;
}

const lines = (text: string) =>
  text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);

/** `8080:80/tcp`, `80`, `127.0.0.1:8080:80/udp` → a port spec. */
function port(line: string): Record<string, unknown> {
  const [mapping = '', protocol] = line.split('/');
  const parts = mapping.split(':');
  const container_port = Number(parts[parts.length - 1]);
  const out: Record<string, unknown> = { container_port };
  if (parts.length >= 2) out.host_port = Number(parts[parts.length - 2]);
  if (parts.length === 3) out.host_ip = parts[0];
  if (protocol) out.protocol = protocol;
  return out;
}

/** `bind /srv/data /data ro`, `volume cache /cache`, `tmpfs /run` → a mount spec. */
function mount(line: string): Record<string, unknown> {
  const [type, a, b, flag] = line.split(/\s+/);
  if (type === 'tmpfs') return { type, target: a };
  return { type, source: a, target: b, read_only: flag === 'ro' };
}

function pairs(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const l of lines(text)) {
    const at = l.indexOf('=');
    if (at > 0) out[l.slice(0, at)] = l.slice(at + 1);
  }
  return out;
}

export function CreateContainerDialog({ agentId, open, onClose, onCreated }: { agentId: string; open: boolean; onClose: () => void; onCreated: (message: string) => void }) {
  const [name, setName] = useState('');
  const [image, setImage] = useState('');
  const [command, setCommand] = useState('');
  const [env, setEnv] = useState('');
  const [ports, setPorts] = useState('');
  const [mounts, setMounts] = useState('');
  const [user, setUser] = useState('');
  const [restart, setRestart] = useState('unless-stopped');
  const [health, setHealth] = useState('');
  const [labels, setLabels] = useState('');
  const [networks, setNetworks] = useState('');
  const [memory, setMemory] = useState('');
  const [cpus, setCpus] = useState('');
  const [start, setStart] = useState(true);
  const [error, setError] = useState<ApiError | null>(null);
  const [progress, setProgress] = useState<Progress[]>([]);
  const [busy, setBusy] = useState(false);

  const spec = (): Record<string, unknown> => {
    const s: Record<string, unknown> = { name: name.trim(), image: image.trim(), restart_policy: restart, start };
    if (lines(command).length) s.command = lines(command);
    if (lines(env).length) s.env = pairs(env);
    if (lines(ports).length) s.ports = lines(ports).map(port);
    if (lines(mounts).length) s.mounts = lines(mounts).map(mount);
    if (user.trim()) s.user = user.trim();
    if (health.trim()) s.healthcheck = { test: ['CMD-SHELL', health.trim()] };
    if (lines(labels).length) s.labels = pairs(labels);
    if (lines(networks).length) s.networks = lines(networks);
    if (memory.trim()) s.memory_bytes = Math.round(Number(memory) * 1024 * 1024);
    if (cpus.trim()) s.cpus = Number(cpus);
    return s;
  };

  return (
    <Dialog title="New container" open={open} onClose={onClose} testId="create-container-dialog">
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          setError(null);
          setProgress([]);
          setBusy(true);
          try {
            let done = false;
            await containersApi.create(agentId, spec(), (line) => {
              const l = line as { progress?: Progress; result?: { name: string; state: string | null; warnings?: { name: string; reasons: string[] }[] }; error?: { status: number; code: string; message: string; field: string | null } };
              if (l.progress) setProgress((p) => [...p.slice(-200), l.progress as Progress]);
              if (l.error) setError(new ApiError(l.error.status, l.error.code, l.error.message, l.error.field));
              if (l.result) {
                done = true;
                const warned = (l.result.warnings ?? []).map((w) => `${w.name} — ${w.reasons.join('; ')}`).join(' | ');
                onCreated(`Created ${l.result.name}${l.result.state ? ` (now ${l.result.state})` : ''}.${warned ? ` Policy warning: ${warned}` : ''}`);
              }
            });
            if (done) onClose();
          } catch (err) {
            setError(toApiError(err));
          } finally {
            setBusy(false);
          }
        }}
      >
        <FormError error={error} />
        <TextField label="Image" name="image" value={image} placeholder="registry.example.com/team/app:1.2" onChange={(e) => setImage(e.target.value)} required error={error} />
        <TextField label="Name" name="name" value={name} onChange={(e) => setName(e.target.value)} required error={error} />
        <TextField label="User (user[:group]; empty: the image's)" name="user" value={user} placeholder="1000:1000" onChange={(e) => setUser(e.target.value)} error={error} />
        <SelectField label="Restart policy" name="restart_policy" value={restart} onChange={(e) => setRestart(e.target.value)} error={error}>
          <option value="no">No</option>
          <option value="always">Always</option>
          <option value="unless-stopped">Unless stopped</option>
          <option value="on-failure">On failure</option>
        </SelectField>
        <Area label="Command (one argument per line)" name="command" value={command} onChange={setCommand} error={error} />
        <Area label="Environment (NAME=value per line)" name="env" value={env} onChange={setEnv} error={error} />
        <Area label="Ports (host:container[/udp] per line)" name="ports" value={ports} onChange={setPorts} error={error} />
        <Area label="Mounts (bind SOURCE TARGET [ro] · volume NAME TARGET · tmpfs TARGET, per line)" name="mounts" value={mounts} onChange={setMounts} error={error} />
        <TextField label="Healthcheck (a shell command; empty: the image's)" name="healthcheck" value={health} placeholder="wget -q -O- http://localhost/ || exit 1" onChange={(e) => setHealth(e.target.value)} error={error} />
        <Area label="Labels (key=value per line)" name="labels" value={labels} onChange={setLabels} error={error} />
        <Area label="Networks (one per line)" name="networks" value={networks} onChange={setNetworks} error={error} />
        <TextField label="Memory limit (MiB)" name="memory_bytes" type="number" min={6} value={memory} onChange={(e) => setMemory(e.target.value)} error={error} />
        <TextField label="CPU limit (cores)" name="cpus" type="number" step="0.01" min={0.01} value={cpus} onChange={(e) => setCpus(e.target.value)} error={error} />
        <CheckboxField label="Start it" name="start" checked={start} onChange={setStart} error={error} />
        {progress.length > 0 && (
          <ol className="pull-progress small" data-testid="pull-progress" aria-live="polite">
            {progress.slice(-8).map((p, i) => (
              <li key={i}>
                {p.layer ? `${p.layer}: ` : ''}
                {p.status}
                {p.current && p.total ? ` ${Math.round((100 * p.current) / p.total)} %` : ''}
              </li>
            ))}
          </ol>
        )}
        <div className="form-actions">
          <button type="submit" className="btn btn-primary" disabled={busy}>
            {busy ? 'Creating…' : 'Create container'}
          </button>
          <button type="button" className="btn" onClick={onClose}>
            Cancel
          </button>
        </div>
      </form>
    </Dialog>
  );
}

function Area({ label, name, value, onChange, error }: { label: string; name: string; value: string; onChange: (v: string) => void; error: ApiError | null }) {
  const invalid = !!error?.field && (error.field === name || error.field.startsWith(`${name}.`));
  return (
    <div className={`field${invalid ? ' field-invalid' : ''}`}>
      <label htmlFor={`cc-${name}`}>{label}</label>
      <textarea id={`cc-${name}`} name={name} rows={2} value={value} aria-invalid={invalid || undefined} onChange={(e) => onChange(e.target.value)} />
      {invalid && <small className="field-error">{error?.message}</small>}
    </div>
  );
}
