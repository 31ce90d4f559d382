import { Link } from 'react-router-dom';
import { PageHeader } from '../components/ui';

export function NotFoundPage() {
  return (
    <>
      <PageHeader title="Page not found" />
      <p>
        There is nothing here. <Link to="/">Back to the dashboard</Link>.
      </p>
    </>
  );
}

export function ForbiddenPage() {
  return (
    <>
      <PageHeader title="Not allowed" />
      <p>
        Your role cannot open this page. <Link to="/">Back to the dashboard</Link>.
      </p>
    </>
  );
}
