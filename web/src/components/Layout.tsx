import { NavLink, Outlet, useLocation, useNavigate } from 'react-router-dom';
import { useEffect, useState } from 'react';
import { api, toApiError } from '../api/client';
import { useAuth, useUser } from '../auth';
import { atLeast, roleLabel } from '../roles';
import { PAGES } from '../pages';
import { useTheme, type ThemeChoice } from '../theme';
import { CreateOrganisationForm } from '../pages/Organisation';

const THEME_LABEL: Record<ThemeChoice, string> = { system: 'System', light: 'Light', dark: 'Dark' };
const THEME_ICON: Record<ThemeChoice, string> = { system: '◐', light: '☀', dark: '☾' };

export function ThemeToggle() {
  const { choice, cycle } = useTheme();
  return (
    <button
      type="button"
      className="btn btn-ghost theme-toggle"
      onClick={cycle}
      title="Switch colour theme (system, light, dark)"
      data-testid="theme-toggle"
    >
      <span aria-hidden="true">{THEME_ICON[choice]}</span> Theme: {THEME_LABEL[choice]}
    </button>
  );
}

/** Theme toggle for the pages outside the signed-in layout (setup, sign-in). */
export function CornerThemeToggle() {
  return (
    <div className="corner-toggle">
      <ThemeToggle />
    </div>
  );
}

/** The organisation this tab acts in; switching reloads the role there and starts at its dashboard. */
function OrgSwitcher() {
  const user = useUser();
  const { orgs, switchOrg } = useAuth();
  const navigate = useNavigate();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  if (orgs.length === 0) return null;
  return (
    <label className="org-switcher">
      <span className="visually-hidden">Organisation</span>
      <select
        data-testid="org-switcher"
        value={user.org_id ?? ''}
        disabled={busy}
        aria-invalid={error !== null}
        title={error ?? undefined}
        onChange={(e) => {
          setBusy(true);
          setError(null);
          switchOrg(e.target.value)
            .then(() => navigate('/'))
            .catch((err: unknown) => setError(`Could not switch: ${toApiError(err).message}`))
            .finally(() => setBusy(false));
        }}
      >
        {orgs.map((o) => (
          <option key={o.id} value={o.id}>
            {o.name}
          </option>
        ))}
      </select>
      {error && (
        <span role="alert" className="error-text">
          {error}
        </span>
      )}
    </label>
  );
}

export function Layout() {
  const user = useUser();
  const { signOut } = useAuth();
  const location = useLocation();
  // Without an organisation nothing but accepting an invitation (or making one) can work.
  const orgless = !user.org_id && location.pathname !== '/invitations/accept';
  const [version, setVersion] = useState<string | null>(null);

  useEffect(() => {
    api
      .health()
      .then((h) => setVersion(h.version))
      .catch(() => setVersion(null));
  }, []);

  const items = PAGES.filter((p) => p.nav && atLeast(user.role, p.minRole));

  return (
    <div className="shell">
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <div className="brand">
          <img src="/favicon.svg" alt="" width="24" height="24" />
          <span>InfraPilot</span>
        </div>
        <div className="topbar-right">
          <OrgSwitcher />
          <ThemeToggle />
          <span className="whoami" data-testid="whoami">
            {user.name} <span className="muted">({roleLabel(user.role)})</span>
          </span>
          <button type="button" className="btn" onClick={() => void signOut()}>
            Sign out
          </button>
        </div>
      </header>
      <nav className="sidebar" aria-label="Main">
        <ul>
          {items.map((p) => (
            <li key={p.path}>
              <NavLink to={p.path} end={p.path === '/'}>
                {p.label}
              </NavLink>
            </li>
          ))}
        </ul>
        {version && <p className="sidebar-footer muted">v{version}</p>}
      </nav>
      <main id="main" className="content" tabIndex={-1}>
        {/* A new organisation remounts every page, so nothing of the previous one stays on screen. */}
        {orgless ? <NoOrganisation /> : <Outlet key={user.org_id ?? ''} />}
      </main>
    </div>
  );
}

function NoOrganisation() {
  const user = useUser();
  return (
    <div className="card" data-testid="no-organisation">
      <h1>You belong to no organisation</h1>
      {user.can_create_organisations ? (
        <>
          <p>Make one to start, or open an invitation link someone sent you.</p>
          <CreateOrganisationForm />
        </>
      ) : (
        <p>Ask an administrator for an invitation, then open its link.</p>
      )}
    </div>
  );
}
