// Container write → browser latency of a log line (issue 17), with the node's spool in the path:
// a container writes a line every 100 ms; a page of the dashboard's origin in Chromium follows
// the container through the Logs WebSocket (`/api/v1/logs/stream`) as the Logs page does, and
// each line's latency is its arrival in the browser minus the time Docker stamped on it when the
// container wrote it. Prints p50/p95/p99/max. Run by scripts/bench-log-latency.sh.
import { openBrowser } from './lib.mjs';

const BASE = process.env.INFRAPILOT_URL;
const TOKEN = process.env.BENCH_TOKEN;
const CONTAINER = process.env.BENCH_CONTAINER;
const SECONDS = Number(process.env.BENCH_SECONDS || 60);

const { browser, page } = await openBrowser();
await page.goto(`${BASE}/`);
const latencies = await page.evaluate(
  ({ token, container, seconds }) =>
    new Promise((resolve, reject) => {
      const url = `${location.origin.replace('http', 'ws')}/api/v1/logs/stream?container=${encodeURIComponent(container)}`;
      const ws = new WebSocket(url, ['infrapilot.v1', `bearer.${token}`]);
      const out = [];
      ws.onerror = () => reject(new Error('the log stream failed'));
      ws.onmessage = (event) => {
        const now = performance.timeOrigin + performance.now();
        const message = JSON.parse(event.data);
        for (const line of message.lines || []) {
          if (!line.line.startsWith('tick ')) continue;
          // time_ns: Docker's timestamp of the write (ns since the epoch).
          out.push(now - line.time_ns / 1e6);
        }
      };
      setTimeout(() => {
        ws.close();
        resolve(out);
      }, seconds * 1000);
    }),
  { token: TOKEN, container: CONTAINER, seconds: SECONDS },
);
await browser.close();
if (latencies.length < SECONDS * 5) {
  console.error(`only ${latencies.length} lines arrived in ${SECONDS} s`);
  process.exit(1);
}
latencies.sort((a, b) => a - b);
const at = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
console.log(
  `lines ${latencies.length}  p50 ${at(0.5).toFixed(1)} ms  p95 ${at(0.95).toFixed(1)} ms  ` +
    `p99 ${at(0.99).toFixed(1)} ms  max ${latencies[latencies.length - 1].toFixed(1)} ms`,
);
