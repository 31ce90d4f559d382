import { BrowserRouter, Navigate, Route, Routes, useLocation } from 'react-router-dom';
import { AuthProvider, useAuth } from './auth';
import type { ReactNode } from 'react';
import { Layout } from './components/Layout';
import { PAGES } from './pages';
import { atLeast } from './roles';
import { SetupPage } from './pages/Setup';
import { LoginPage } from './pages/Login';
import { NotFoundPage, ForbiddenPage } from './pages/NotFound';
import { SignupPage, VerifyEmailPage } from './pages/Signup';
import { AcceptInvitationSignedOut } from './pages/Invitation';
import { SsoCallbackPage } from './pages/SsoCallback';

function Splash({ children }: { children?: ReactNode }) {
  return (
    <div className="splash" aria-busy={!children}>
      {children ?? <p className="muted">Loading…</p>}
    </div>
  );
}

/** Where to go after signing in: the page that sent us to /login, if any. */
function AfterSignIn() {
  const location = useLocation();
  const from = (location.state as { from?: string } | null)?.from;
  // Only a path of this site (not `//host` or `/\host`, which browsers treat as another origin).
  const local = from && /^\/(?![/\\])/.test(from) && !['/login', '/setup', '/signup'].includes(from);
  return <Navigate to={local ? from : '/'} replace />;
}

/** To the sign-in page, remembering the page asked for (unless the user just signed out). */
function ToLogin({ remember }: { remember: boolean }) {
  const location = useLocation();
  return <Navigate to="/login" replace state={remember ? { from: location.pathname + location.search + location.hash } : null} />;
}

function AppRoutes() {
  const { state, user, reload } = useAuth();

  switch (state.status) {
    case 'loading':
      return <Splash />;
    case 'unreachable':
      return (
        <Splash>
          <div className="card auth-card">
            <h1>InfraPilot is unreachable</h1>
            <p role="alert">{state.error.message}</p>
            <button type="button" className="btn btn-primary" onClick={() => void reload()}>
              Retry
            </button>
          </div>
        </Splash>
      );
    case 'setup':
      return (
        <Routes>
          <Route path="/setup" element={<SetupPage />} />
          <Route path="*" element={<Navigate to="/setup" replace />} />
        </Routes>
      );
    case 'anonymous':
      return (
        <Routes>
          <Route path="/login" element={<LoginPage />} />
          <Route path="/login/sso" element={<SsoCallbackPage />} />
          <Route path="/setup" element={<Navigate to="/login" replace />} />
          <Route path="/signup" element={state.signupOpen ? <SignupPage /> : <Navigate to="/login" replace />} />
          <Route path="/signup/verify" element={<VerifyEmailPage />} />
          <Route path="/invitations/accept" element={<AcceptInvitationSignedOut />} />
          <Route path="*" element={<ToLogin remember={!state.signedOut} />} />
        </Routes>
      );
    case 'signed-in':
      return (
        <Routes>
          <Route path="/login" element={<AfterSignIn />} />
          <Route path="/setup" element={<Navigate to="/" replace />} />
          <Route path="/signup" element={<Navigate to="/" replace />} />
          <Route path="/login/sso" element={<Navigate to="/" replace />} />
          <Route path="/signup/verify" element={<VerifyEmailPage />} />
          <Route element={<Layout />}>
            {PAGES.map((p) => (
              <Route
                key={p.path}
                path={p.path}
                element={atLeast(user?.role, p.minRole) ? p.element : <ForbiddenPage />}
              />
            ))}
            <Route path="*" element={<NotFoundPage />} />
          </Route>
        </Routes>
      );
  }
}

export function App() {
  return (
    <BrowserRouter>
      <AuthProvider>
        <AppRoutes />
      </AuthProvider>
    </BrowserRouter>
  );
}
