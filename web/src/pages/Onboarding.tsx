// The first steps of a new organisation: `/onboarding` (what is done, what is next) and
// `/onboarding/install` (an enrollment token, its one-liner, then the node coming online, live).

import { useRef, useState, type FormEvent } from 'react';
import { Link } from 'react-router-dom';
import { ApiError, toApiError } from '../api/client';
import { nodesApi, type Agent, type CreatedEnrollment } from '../api/containers';
import { useAuth, useUser } from '../auth';
import { FormError, PageHeader, TextField, usePoll } from '../components/ui';
import { atLeast } from '../roles';
import { AgentStatusBadge, CreatedTokenBox } from './Nodes';

const POLL_MS = 2000;

/** The organisation's own nodes (the host's built-in agent is not a step of anyone's onboarding). */
const enrolled = (agents: Agent[] | null) => (agents ?? []).filter((a) => !a.builtin && !a.revoked);

export function OnboardingPage() {
  const user = useUser();
  const { orgs } = useAuth();
  const org = orgs.find((o) => o.id === user.org_id);
  const agents = usePoll(() => nodesApi.agents(), POLL_MS * 2);
  const nodes = enrolled(agents.data);
  const online = nodes.some((a) => a.status === 'online');
  const canEnroll = atLeast(user.role, 'admin');

  return (
    <>
      <PageHeader title={`Welcome${org ? ` to ${org.name}` : ''}`} />
      <ol className="checklist" data-testid="onboarding-steps">
        <li className="done">
          <strong>Organisation</strong>: {org?.name ?? '—'} is yours.
        </li>
        <li className={online ? 'done' : ''}>
          <strong>Connect a Docker host</strong>:{' '}
          {online ? (
            <>
              {nodes.length} node{nodes.length === 1 ? '' : 's'} online. <Link to="/nodes">See your nodes</Link>.
            </>
          ) : canEnroll ? (
            <>
              run one command on the host and watch it appear. <Link to="/onboarding/install" className="btn btn-primary btn-small">Add a node</Link>
            </>
          ) : (
            'an admin of this organisation adds the first node.'
          )}
        </li>
        <li>
          <strong>Invite your team</strong>: <Link to="/organisation">send invitations</Link> with the role each needs.
        </li>
        <li>
          <strong>Publish a service</strong>: a <Link to="/proxies">proxy host</Link> with automatic TLS in front of a container.
        </li>
      </ol>
    </>
  );
}

export function OnboardingInstallPage() {
  const [created, setCreated] = useState<CreatedEnrollment | null>(null);
  // The nodes there before this page made its token; the new one is the one that was not.
  const before = useRef<Set<string> | null>(null);
  const agents = usePoll(() => nodesApi.agents(), POLL_MS);
  if (agents.data && before.current === null) before.current = new Set(agents.data.map((a) => a.id));
  const fresh = created ? enrolled(agents.data).filter((a) => !before.current?.has(a.id)) : [];
  const online = fresh.find((a) => a.status === 'online');

  return (
    <>
      <PageHeader title="Add a node" />
      <p className="muted">
        A node is a Docker host that InfraPilot manages through its agent. The agent connects out to this host over mutual TLS;
        no port opens on the node.
      </p>
      {!created ? (
        <TokenStep onCreated={setCreated} />
      ) : (
        <>
          <section className="card" aria-labelledby="install-title">
            <h2 id="install-title">2. Run this on the Docker host</h2>
            <CreatedTokenBox created={created} />
          </section>
          <section className="card" aria-labelledby="wait-title" aria-live="polite" data-testid="onboarding-wait">
            <h2 id="wait-title">3. Your node</h2>
            {online ? (
              <p data-testid="onboarding-online">
                <AgentStatusBadge agent={online} /> Your node <strong>{online.name}</strong> is online.{' '}
                <Link to={`/nodes/${encodeURIComponent(online.id)}`} className="btn btn-primary btn-small">
                  Open it
                </Link>
              </p>
            ) : fresh[0] ? (
              <p>
                <strong>{fresh[0].name}</strong> enrolled; waiting for it to connect…
              </p>
            ) : (
              <p className="muted">Waiting for the node to enroll… this page updates by itself.</p>
            )}
            <FormError error={agents.error} />
          </section>
        </>
      )}
    </>
  );
}

function TokenStep({ onCreated }: { onCreated: (t: CreatedEnrollment) => void }) {
  const [name, setName] = useState('first-node');
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onCreated(await nodesApi.createEnrollmentToken({ name: name.trim(), labels: {}, max_uses: 1, expires_in_hours: 24 }));
    } catch (err) {
      setError(toApiError(err));
      setBusy(false);
    }
  }

  return (
    <section className="card" aria-labelledby="token-title">
      <h2 id="token-title">1. An enrollment token</h2>
      <p className="muted">Single use, valid for 24 hours. The one-line installer carries it to the node.</p>
      <form onSubmit={submit} data-testid="onboarding-token-form">
        <FormError error={error} />
        <TextField label="Token name" name="name" value={name} onChange={(e) => setName(e.target.value)} required error={error} />
        <div className="actions actions-left">
          <button type="submit" className="btn btn-primary" disabled={busy}>
            Create token and show the command
          </button>
        </div>
      </form>
    </section>
  );
}
