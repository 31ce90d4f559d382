import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState, type ReactNode } from 'react';
import { ApiError, api, getOrg, hasTokens, onAuthLost, onOrgLost, setOrg, setTokens, toApiError } from './api/client';
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

/** The person and their organisations, acting in `target` (else the tab's organisation) if they
 *  belong to it, else in the one the server picks. The tab switches only once this succeeded. */
async function loadSignedIn(target?: string): Promise<{ status: 'signed-in'; user: MeDto; orgs: OrganizationDto[] }> {
  let user: MeDto;
  const wanted = target ?? getOrg() ?? undefined;
  try {
    user = await api.me(wanted);
  } catch (e) {
    const err = toApiError(e);
    if (err.status !== 404 || !wanted || target) throw e;
    // The tab's organisation is no longer ours (removed, or deleted): let the server choose.
    user = await api.me('');
  }
  const orgs = await api.orgs();
  setOrg(user.org_id ?? null);
  return { status: 'signed-in', user, orgs };
}

export function AuthProvider({ children }: { children: ReactNode }) {
  const [state, setState] = useState<AuthState>({ status: 'loading' });
  // Whether public sign-up is open, remembered for the sign-in page after signing out.
  const signupOpen = useRef(false);

  const reload = useCallback(async (opts?: { notice?: string; email?: string }) => {
    try {
      const setup = await api.setupStatus();
      signupOpen.current = setup.signup_open;
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
      else setState((prev) => (prev.status === 'anonymous' ? prev : { status: 'anonymous', signupOpen: signupOpen.current }));
    }
  }, []);

  useEffect(() => {
    void reload();
  }, [reload]);

  useEffect(
    () =>
      onAuthLost(() =>
        setState({ status: 'anonymous', notice: 'Your session has ended. Please sign in again.', signupOpen: signupOpen.current }),
      ),
    [],
  );

  // Removed from the tab's organisation (or it was deleted) while signed in: act in another.
  useEffect(
    () =>
      onOrgLost(() => {
        setOrg(null);
        loadSignedIn()
          .then(setState)
          .catch(() => undefined);
      }),
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
    setState({ status: 'anonymous', signedOut: true, signupOpen: signupOpen.current });
  }, []);

  const reloadUser = useCallback(async () => {
    setState(await loadSignedIn());
  }, []);

  const switchOrg = useCallback(async (id: string) => {
    setState(await loadSignedIn(id));
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
