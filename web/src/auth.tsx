import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from 'react';
import { ApiError, api, getOrg, hasTokens, onAuthLost, setOrg, setTokens, toApiError } from './api/client';
import type { MeDto, OrganizationDto, TokenPair } from './api/types';

export type AuthState =
  | { status: 'loading' }
  | { status: 'unreachable'; error: ApiError }
  | { status: 'setup' }
  | { status: 'anonymous'; notice?: string; email?: string; signedOut?: boolean; signupOpen?: boolean }
  | { status: 'signed-in'; user: MeDto; orgs: OrganizationDto[] };

interface AuthContextValue {
  state: AuthState;
  /** The signed-in user (with their role in the current organisation), or null. */
  user: MeDto | null;
  /** The signed-in person's organisations (every one, for the host operator). */
  orgs: OrganizationDto[];
  /** Act in another organisation from now on (this tab); reloads the user's role there. */
  switchOrg: (id: string) => Promise<void>;
  /** Re-read the organisations (after creating, renaming, joining or leaving one). */
  reloadOrgs: () => Promise<void>;
  /** Store a token pair from login / MFA verify and load the user. */
  signIn: (pair: TokenPair) => Promise<void>;
  signOut: () => Promise<void>;
  /** Re-read setup status and the current user (after setup, or to retry);
   *  `notice` / `email` are handed to the sign-in page if it is shown. */
  reload: (opts?: { notice?: string; email?: string }) => Promise<void>;
  /** Re-fetch /auth/me, e.g. after MFA or profile changes. */
  reloadUser: () => Promise<void>;
}

const AuthContext = createContext<AuthContextValue | null>(null);

/** The person and their organisations, acting in the chosen organisation if they still belong to
 *  it (else the one the server picks, which is then pinned for this tab). */
async function loadSignedIn(): Promise<{ status: 'signed-in'; user: MeDto; orgs: OrganizationDto[] }> {
  let user: MeDto;
  try {
    user = await api.me();
  } catch (e) {
    const err = toApiError(e);
    if (err.status !== 404 || !getOrg()) throw e;
    // The chosen organisation is no longer ours (removed, or deleted): let the server choose.
    setOrg(null);
    user = await api.me();
  }
  setOrg(user.org_id ?? null);
  const orgs = await api.orgs();
  return { status: 'signed-in', user, orgs };
}

export function AuthProvider({ children }: { children: ReactNode }) {
  const [state, setState] = useState<AuthState>({ status: 'loading' });

  const reload = useCallback(async (opts?: { notice?: string; email?: string }) => {
    try {
      const setup = await api.setupStatus();
      if (setup.needed) {
        setTokens(null);
        setState({ status: 'setup' });
        return;
      }
      if (!hasTokens()) {
        setState({ status: 'anonymous', signupOpen: setup.signup_open, ...opts });
        return;
      }
      setState(await loadSignedIn());
    } catch (e) {
      const err = toApiError(e);
      if (err.status === 0 || err.status >= 500) setState({ status: 'unreachable', error: err });
      // A 401 here already went through onAuthLost (which set a notice); keep it.
      else setState((prev) => (prev.status === 'anonymous' ? prev : { status: 'anonymous' }));
      void api
        .setupStatus()
        .then((s) => setState((prev) => (prev.status === 'anonymous' ? { ...prev, signupOpen: s.signup_open } : prev)))
        .catch(() => undefined);
    }
  }, []);

  useEffect(() => {
    void reload();
  }, [reload]);

  useEffect(
    () =>
      onAuthLost(() =>
        setState({ status: 'anonymous', notice: 'Your session has ended. Please sign in again.' }),
      ),
    [],
  );

  const signIn = useCallback(async (pair: TokenPair) => {
    setTokens(pair);
    setState(await loadSignedIn());
  }, []);

  const signOut = useCallback(async () => {
    try {
      if (hasTokens()) await api.logout();
    } catch {
      // The session may already be gone; sign out locally regardless.
    }
    setTokens(null);
    setOrg(null);
    // signedOut: the sign-in page should not send us back to where we were.
    setState({ status: 'anonymous', signedOut: true });
  }, []);

  const reloadUser = useCallback(async () => {
    setState(await loadSignedIn());
  }, []);

  const switchOrg = useCallback(async (id: string) => {
    setOrg(id);
    setState(await loadSignedIn());
  }, []);

  const value = useMemo<AuthContextValue>(
    () => ({
      state,
      user: state.status === 'signed-in' ? state.user : null,
      orgs: state.status === 'signed-in' ? state.orgs : [],
      switchOrg,
      reloadOrgs: reloadUser,
      signIn,
      signOut,
      reload,
      reloadUser,
    }),
    [state, signIn, signOut, reload, reloadUser, switchOrg],
  );

  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function useAuth(): AuthContextValue {
  const ctx = useContext(AuthContext);
  if (!ctx) throw new Error('useAuth outside AuthProvider');
  return ctx;
}

/** The signed-in user; only for components rendered inside the signed-in layout. */
export function useUser(): MeDto {
  const { user } = useAuth();
  if (!user) throw new Error('useUser without a signed-in user');
  return user;
}
