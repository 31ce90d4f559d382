import { Link } from 'react-router-dom';
import { useUser } from '../auth';
import { Notice, PageHeader } from '../components/ui';
import { PAGES } from '../pages';
import { atLeast, roleLabel } from '../roles';

export function HomePage() {
  const user = useUser();
  const shortcuts = PAGES.filter((p) => p.nav && p.path !== '/' && atLeast(user.role, p.minRole));
  return (
    <>
      <PageHeader title="Dashboard" />
      <p>
        Signed in as <strong>{user.name}</strong> ({user.email}), role <strong>{roleLabel(user.role)}</strong>.
      </p>
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
