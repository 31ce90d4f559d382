import type { Role } from './api/types';

const RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2, super_admin: 3 };

export const ROLE_LABELS: Record<Role, string> = {
  super_admin: 'Super admin',
  admin: 'Admin',
  operator: 'Operator',
  viewer: 'Viewer',
};

/** The API sends roles as plain strings; true for the four built-in ones. */
export function isRole(role: string | undefined): role is Role {
  return role !== undefined && Object.hasOwn(RANK, role);
}

/** True when `role` has at least the privileges of `min`. Unknown roles get nothing. */
export function atLeast(role: string | undefined, min: string): boolean {
  return isRole(role) && isRole(min) && RANK[role] >= RANK[min];
}

export function roleLabel(role: string): string {
  return isRole(role) ? ROLE_LABELS[role] : role;
}
