// Browser test of the dashboard over built-in TLS, run by the Rust test suite as
//   node tests/browser/https.mjs
// with DASHBOARD_URL (an https:// dashboard link), TRUST_SPKI (the server key's pin), OUT_DIR
// and optionally CHROMIUM.
//
// The page loads over HTTPS, its WebSocket (wss://) goes live and the stream card shows. Exit
// status 0 only after "OK". Tokens are redacted.

import { mkdirSync } from 'node:fs';
import { close, CONNECT_409, cspViolations, finish, launch, requireEnv, run, screenshot, step, StepError, watchedPage } from './lib.mjs';

async function main() {
  const url = requireEnv('DASHBOARD_URL');
  requireEnv('TRUST_SPKI');
  const outDir = requireEnv('OUT_DIR');
  mkdirSync(outDir, { recursive: true });
  const problems = [];
  let browser;
  try {
    browser = await step('launch chromium', launch);
    const page = await watchedPage(browser, 'dashboard', problems, { viewport: { width: 1280, height: 900 } }, { expected: [CONNECT_409] });

    await step('the dashboard loads over HTTPS and goes live over wss://', async () => {
      if (!url.startsWith('https://')) throw new StepError('the dashboard link is not https');
      const res = await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 30_000 });
      if (!res || res.status() !== 200) throw new StepError(`answered HTTP ${res ? res.status() : 'nothing'}`);
      await page.waitForSelector('#live[data-status="live"]', { timeout: 15_000 });
      await page.waitForSelector('section.stream[data-stream="default"]', { timeout: 15_000 });
      const secure = await page.evaluate(() => window.isSecureContext && location.protocol === 'https:');
      if (!secure) throw new StepError('the page is not a secure context');
      await screenshot(page, outDir, 'https-dashboard.png');
    });
    problems.push(...(await cspViolations(page, 'dashboard')));

    return finish(problems);
  } finally {
    await close(browser);
  }
}

run('https', main);
