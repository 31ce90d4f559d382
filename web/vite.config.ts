import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// Node's `process`, declared here instead of pulling in @types/node for one line.
declare const process: { env: Record<string, string | undefined> };

// `npm run dev` and `npm run preview` proxy the API to a locally running `infrapilot serve`
// (INFRAPILOT_URL, default http://127.0.0.1:8080). The production build goes
// to web/dist, which the Rust binary embeds.
const backend = process.env.INFRAPILOT_URL ?? 'http://127.0.0.1:8080';

// The Content-Security-Policy the Rust server sends; `vite preview` sends it too,
// so a preview run catches anything the CSP would block in production.
const csp =
  "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'";

const proxy = {
  '/api': { target: backend, ws: true },
  '/healthz': backend,
};

export default defineConfig({
  plugins: [react()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // Everything is bundled: the served CSP allows no inline script and no CDN.
    assetsInlineLimit: 0,
    sourcemap: false,
  },
  server: { proxy },
  preview: {
    proxy,
    headers: { 'Content-Security-Policy': csp },
  },
});
