import { NavLink, Outlet } from 'react-router-dom';
import { useEffect, useState } from 'react';
import { api } from '../api/client';
import { useAuth, useUser } from '../auth';
import { atLeast, roleLabel } from '../roles';
import { PAGES } from '../pages';
import { useTheme, type ThemeChoice } from '../theme';

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

export function Layout() {
  const user = useUser();
  const { signOut } = useAuth();
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
        <Outlet />
      </main>
    </div>
  );
}
