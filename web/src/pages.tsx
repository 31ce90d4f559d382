// The registry of signed-in pages. The router and the sidebar are both built
// from this list: a new feature adds one entry (and its page component).
// `minRole` hides the item and guards the route for lower roles; the server
// enforces the same rules, this only keeps the UI honest.

import type { ReactNode } from 'react';
import type { Role } from './api/types';
import { HomePage } from './pages/Home';
import { UsersPage } from './pages/Users';
import { AuditPage } from './pages/Audit';
import { TokensPage } from './pages/Tokens';
import { ProfilePage } from './pages/Profile';
import { NodesPage } from './pages/Nodes';
import { NodePage } from './pages/NodeContainers';
import { ContainerPage } from './pages/ContainerDetail';
import { PluginsPage } from './pages/Plugins';
import { LicensePage } from './pages/License';
import { AlertChannelsPage } from './pages/AlertChannels';
import { AlertRulesPage } from './pages/AlertRules';
import { AlertHistoryPage } from './pages/AlertHistory';
import { ProxiesPage } from './pages/Proxies';
import { OrganisationPage } from './pages/Organisation';
import { OnboardingInstallPage, OnboardingPage } from './pages/Onboarding';
import { AcceptInvitationPage } from './pages/Invitation';
import { SingleSignOnPage } from './pages/SingleSignOn';
import { LogsPage } from './pages/Logs';
import { HealthPage } from './pages/Health';
import { PoliciesPage, PolicyEditPage, ViolationsPage } from './pages/Policies';

export interface PageDef {
  path: string;
  label: string;
  minRole: Role;
  /** Shown in the sidebar. */
  nav: boolean;
  element: ReactNode;
}

export const PAGES: PageDef[] = [
  { path: '/', label: 'Dashboard', minRole: 'viewer', nav: true, element: <HomePage /> },
  { path: '/nodes', label: 'Nodes', minRole: 'viewer', nav: true, element: <NodesPage /> },
  { path: '/nodes/:id', label: 'Node', minRole: 'viewer', nav: false, element: <NodePage /> },
  { path: '/nodes/:id/containers/:cid', label: 'Container', minRole: 'viewer', nav: false, element: <ContainerPage /> },
  { path: '/logs', label: 'Logs', minRole: 'viewer', nav: true, element: <LogsPage /> },
  { path: '/health', label: 'Health', minRole: 'viewer', nav: true, element: <HealthPage /> },
  { path: '/proxies', label: 'Proxy hosts', minRole: 'viewer', nav: true, element: <ProxiesPage /> },
  { path: '/alerts/history', label: 'Alert history', minRole: 'viewer', nav: true, element: <AlertHistoryPage /> },
  { path: '/alerts/rules', label: 'Alert rules', minRole: 'viewer', nav: true, element: <AlertRulesPage /> },
  { path: '/alerts/channels', label: 'Alert channels', minRole: 'viewer', nav: true, element: <AlertChannelsPage /> },
  { path: '/policies', label: 'Policies', minRole: 'viewer', nav: true, element: <PoliciesPage /> },
  { path: '/policies/new', label: 'New policy', minRole: 'admin', nav: false, element: <PolicyEditPage /> },
  { path: '/policies/violations', label: 'Policy violations', minRole: 'viewer', nav: false, element: <ViolationsPage /> },
  { path: '/policies/:id', label: 'Policy', minRole: 'viewer', nav: false, element: <PolicyEditPage /> },
  { path: '/plugins', label: 'Plugins', minRole: 'viewer', nav: true, element: <PluginsPage /> },
  { path: '/license', label: 'Licence', minRole: 'viewer', nav: true, element: <LicensePage /> },
  { path: '/users', label: 'Users', minRole: 'admin', nav: true, element: <UsersPage /> },
  { path: '/tokens', label: 'API tokens', minRole: 'admin', nav: true, element: <TokensPage /> },
  { path: '/sso', label: 'Single sign-on', minRole: 'admin', nav: true, element: <SingleSignOnPage /> },
  { path: '/audit', label: 'Audit log', minRole: 'admin', nav: true, element: <AuditPage /> },
  { path: '/organisation', label: 'Organisation', minRole: 'viewer', nav: true, element: <OrganisationPage /> },
  { path: '/onboarding', label: 'Get started', minRole: 'viewer', nav: false, element: <OnboardingPage /> },
  { path: '/onboarding/install', label: 'Add a node', minRole: 'admin', nav: false, element: <OnboardingInstallPage /> },
  { path: '/invitations/accept', label: 'Invitation', minRole: 'viewer', nav: false, element: <AcceptInvitationPage /> },
  { path: '/profile', label: 'Profile', minRole: 'viewer', nav: true, element: <ProfilePage /> },
];
