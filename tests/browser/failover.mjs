// Browser test of the dashboard across a failover, run by the Rust test suite as
//   node tests/browser/failover.mjs
// with DASHBOARD_URL (a session's dashboard, through the load balancer in front of several
// nodes), OWNER (the node serving the session), OUT_DIR (screenshots) and optionally CHROMIUM.
//
// The dashboard says which node serves the session; the script prints READY, the Rust test
// kills that node, and the dashboard, reconnecting through the balancer, shows the node that
// took the session over. It prints "MOVED to <node> after <ms> ms", then "OK" (exit status 0).

import { mkdirSync } from 'node:fs';
import { close, CONNECT_409, finish, launch, log, requireEnv, run, screenshot, step, StepError, watchedPage } from './lib.mjs';

async function main() {
  const url = requireEnv('DASHBOARD_URL');
  const owner = requireEnv('OWNER');
  const outDir = requireEnv('OUT_DIR');
  mkdirSync(outDir, { recursive: true });
  const problems = [];
  let browser;
  try {
    browser = await step('launch chromium', launch);
    // while the node is down: the cut WebSocket, and the balancer's or the nodes' answers
    // while nobody serves the session yet
    const outage = [502, 503, 504].map((status) => ({ status, url: /\/api\/(session|ws)\// }));
    const page = await watchedPage(browser, 'dashboard', problems, {}, {
      expected: [CONNECT_409, ...outage],
      tolerated: [/^WebSocket connection to .* failed/],
    });
    const summary = () => page.$eval('#session-summary', (n) => n.textContent);

    await step(`the dashboard says ${owner} serves the session`, async () => {
      const res = await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 30_000 });
      if (!res || res.status() !== 200) throw new StepError(`answered HTTP ${res ? res.status() : 'nothing'}`);
      await page.waitForFunction((o) => (document.querySelector('#session-summary') || {}).textContent?.includes('served by ' + o), owner, { timeout: 15_000 });
    });
    log('READY');

    const started = Date.now();
    await step('after the node dies, it shows the node that took the session over', async () => {
      await page.waitForFunction(
        (o) => {
          const t = (document.querySelector('#session-summary') || {}).textContent || '';
          return /served by \S+/.test(t) && !t.includes('served by ' + o);
        },
        owner,
        { timeout: 30_000, polling: 50 },
      );
      const moved = (await summary()).match(/served by (\S+)/)[1];
      log(`MOVED to ${moved} after ${Date.now() - started} ms`);
      await screenshot(page, outDir, 'failover.png');
    });
    return await finish(problems);
  } finally {
    await close(browser);
  }
}

run('failover', main);
