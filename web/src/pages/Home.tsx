import { Link } from 'react-router-dom';
import { useUser } from '../auth';
import { nodesApi } from '../api/containers';
import { Notice, PageHeader, useLoad } from '../components/ui';
import { PAGES } from '../pages';
import { atLeast, roleLabel } from '../roles';

export function HomePage() {
  const user = useUser();
  // A new organisation has no node yet: point at its first steps.
  const agents = useLoad(() => nodesApi.agents());
  const noNodes = agents.data !== null && agents.data.filter((a) => !a.revoked).length === 0;
  const shortcuts = PAGES.filter((p) => p.nav && p.path !== '/' && atLeast(user.role, p.minRole));
  return (
    <>
      <PageHeader title="Dashboard" />
      <p>
        Signed in as <strong>{user.name}</strong> ({user.email}), role <strong>{roleLabel(user.role)}</strong>.
      </p>
      {noNodes && (
        <Notice>
          This organisation has no node yet.{' '}
          <Link to="/onboarding" data-testid="get-started">
            Get started
          </Link>{' '}
          by connecting your first Docker host.
        </Notice>
      )}
      {!user.mfa_enabled && (
        <Notice kind="warning">
          Two-factor authentication is off for your account. <Link to="/profile">Turn it on in your profile</Link>.
        </Notice>
      )}
      <div className="tiles">
        {shortcuts.map((p) => (
          <Link key={p.path} to={p.path} className="card tile">
            {p.label}
          </Link>
        ))}
      </div>
    </>
  );
}
