// Browser test of the dashboard's waiting room, run by the Rust test suite as
//   node tests/browser/admission.mjs
// with DASHBOARD_URL (a session created with "join": true, a peer waiting in it), STREAM (the
// stream to admit it into), OUT_DIR and optionally CHROMIUM.
//
// The waiting peer shows with its label and the venue QR code loads; choosing the stream and
// clicking Admit gives it the side (the card's side becomes registered, the room empties).
// Exit status 0 only after "OK". Tokens are redacted.

import { mkdirSync } from 'node:fs';
import { close, CSP_PROBE, cspViolations, launch, log, requireEnv, run, screenshot, step, StepError, watch } from './lib.mjs';

async function main() {
  const url = requireEnv('DASHBOARD_URL');
  const stream = requireEnv('STREAM');
  const outDir = requireEnv('OUT_DIR');
  mkdirSync(outDir, { recursive: true });
  const problems = [];
  let browser;
  try {
    browser = await step('launch chromium', launch);
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.addInitScript(CSP_PROBE);
    const page = await context.newPage();
    watch(page, 'dashboard', problems, { expected: [{ status: 409, url: /\/connect(\?|$)/ }] });

    await step('the waiting peer shows in the waiting room', async () => {
      const res = await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 30_000 });
      if (!res || res.status() !== 200) throw new StepError(`answered HTTP ${res ? res.status() : 'nothing'}`);
      await page.waitForSelector('#waiting-room .waiting-peer', { timeout: 15_000 });
      const label = await page.$eval('#waiting-room .waiting-peer .waiting-label', (n) => n.textContent.trim());
      if (label !== 'Camera Ana') throw new StepError(`the waiting peer shows as "${label}"`);
      await page.waitForFunction(() => {
        const img = document.getElementById('venue-qr');
        return img && img.complete && img.naturalWidth > 0;
      }, null, { timeout: 10_000 });
      await screenshot(page, outDir, 'waiting-room.png');
    });

    await step('Admit gives it the side', async () => {
      await page.selectOption('#waiting-room .waiting-peer select.admit-stream', stream);
      await page.click('#waiting-room .waiting-peer button.admit');
      await page.waitForSelector('#waiting-room .waiting-peer', { state: 'detached', timeout: 10_000 });
      await page.waitForSelector(`section.stream[data-stream="${stream}"] .peer[data-role="sender"][data-status="registered"]`, {
        state: 'attached',
        timeout: 10_000,
      });
    });
    problems.push(...(await cspViolations(page, 'dashboard')));

    await step('check for console errors and CSP violations', async () => {
      if (problems.length) throw new StepError(`${problems.length} problem(s):\n  ${problems.join('\n  ')}`);
    });
    log('OK');
    return 0;
  } finally {
    await close(browser);
  }
}

run('admission', main);
