import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from 'react';
import { ApiError, api, hasTokens, onAuthLost, setTokens, toApiError } from './api/client';
import type { TokenPair, UserDto } from './api/types';

export type AuthState =
  | { status: 'loading' }
  | { status: 'unreachable'; error: ApiError }
  | { status: 'setup' }
  | { status: 'anonymous'; notice?: string; email?: string; signedOut?: boolean }
  | { status: 'signed-in'; user: UserDto };

interface AuthContextValue {
  state: AuthState;
  /** The signed-in user, or null. */
  user: UserDto | null;
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
        setState({ status: 'anonymous', ...opts });
        return;
      }
      const user = await api.me();
      setState({ status: 'signed-in', user });
    } catch (e) {
      const err = toApiError(e);
      if (err.status === 0 || err.status >= 500) setState({ status: 'unreachable', error: err });
      // A 401 here already went through onAuthLost (which set a notice); keep it.
      else setState((prev) => (prev.status === 'anonymous' ? prev : { status: 'anonymous' }));
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
    const user = await api.me();
    setState({ status: 'signed-in', user });
  }, []);

  const signOut = useCallback(async () => {
    try {
      if (hasTokens()) await api.logout();
    } catch {
      // The session may already be gone; sign out locally regardless.
    }
    setTokens(null);
    // signedOut: the sign-in page should not send us back to where we were.
    setState({ status: 'anonymous', signedOut: true });
  }, []);

  const reloadUser = useCallback(async () => {
    const user = await api.me();
    setState({ status: 'signed-in', user });
  }, []);

  const value = useMemo<AuthContextValue>(
    () => ({
      state,
      user: state.status === 'signed-in' ? state.user : null,
      signIn,
      signOut,
      reload,
      reloadUser,
    }),
    [state, signIn, signOut, reload, reloadUser],
  );

  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function useAuth(): AuthContextValue {
  const ctx = useContext(AuthContext);
  if (!ctx) throw new Error('useAuth outside AuthProvider');
  return ctx;
}

/** The signed-in user; only for components rendered inside the signed-in layout. */
export function useUser(): UserDto {
  const { user } = useAuth();
  if (!user) throw new Error('useUser without a signed-in user');
  return user;
}
