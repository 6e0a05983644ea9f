// Browser test of the dashboard's waiting room, run by the Rust test suite as
//   node tests/browser/admission.mjs
// with DASHBOARD_URL (a session created with "join": true, two peers waiting in it, "Camera
// Ana" and "Camera Ben"), VENUE_URL (the venue page, /j/ID?t=JOIN), STREAM (the stream to
// admit Ana into), NEW_STREAM (the stream made for Ben), OUT_DIR and optionally CHROMIUM.
//
// The waiting peers show with their labels and the venue QR code loads; the venue page on a
// phone says Ana waits for the producer; choosing the stream and clicking Admit gives Ana the
// side (the card's side becomes registered, the venue page sees her leave the room); "New
// stream…" with a name makes Ben a stream of his own.
// Exit status 0 only after "OK". Tokens are redacted.

import { mkdirSync } from 'node:fs';
import { close, CONNECT_409, cspViolations, finish, launch, requireEnv, run, screenshot, step, StepError, watchedPage } from './lib.mjs';

async function main() {
  const url = requireEnv('DASHBOARD_URL');
  const stream = requireEnv('STREAM');
  const venueUrl = requireEnv('VENUE_URL');
  const newStream = requireEnv('NEW_STREAM');
  const outDir = requireEnv('OUT_DIR');
  mkdirSync(outDir, { recursive: true });
  const problems = [];
  let browser;
  try {
    browser = await step('launch chromium', launch);
    const page = await watchedPage(browser, 'dashboard', problems, { viewport: { width: 1280, height: 900 } }, { expected: [CONNECT_409] });

    await step('the waiting peer shows in the waiting room', async () => {
      const res = await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 30_000 });
      if (!res || res.status() !== 200) throw new StepError(`answered HTTP ${res ? res.status() : 'nothing'}`);
      await page.waitForFunction(() => document.querySelectorAll('#waiting-room .waiting-peer').length === 2, null, { timeout: 15_000 });
      const labels = await page.$$eval('#waiting-room .waiting-peer .waiting-label', (l) => l.map((n) => n.textContent.trim()));
      if (labels.join(',') !== 'Camera Ana,Camera Ben') throw new StepError(`the waiting peers show as ${labels}`);
      await page.waitForFunction(() => {
        const img = document.getElementById('venue-qr');
        return img && img.complete && img.naturalWidth > 0;
      }, null, { timeout: 10_000 });
      await screenshot(page, outDir, 'waiting-room.png');
    });

    const phone = await watchedPage(browser, 'venue page', problems, { viewport: { width: 390, height: 844 }, isMobile: true });
    await step('the venue page says who waits for the producer', async () => {
      const res = await phone.goto(venueUrl, { waitUntil: 'domcontentloaded', timeout: 30_000 });
      if (!res || res.status() !== 200) throw new StepError(`answered HTTP ${res ? res.status() : 'nothing'}`);
      await phone.waitForFunction(() => document.querySelectorAll('#op-waiting-list .op-waiting-peer[data-state="waiting"]').length === 2, null, { timeout: 10_000 });
      const items = await phone.$$eval('#op-waiting-list .op-waiting-peer', (l) => l.map((n) => n.textContent));
      if (!items[0].startsWith('Camera Ana — waiting for the producer')) throw new StepError(`the venue page says ${items}`);
      if (await phone.isVisible('#op-tally')) throw new StepError('the venue page shows a tally');
      const uri = await phone.$eval('#op-fields code', (n) => n.textContent);
      if (!uri.startsWith('punch://')) throw new StepError(`the venue page's URI is ${uri}`);
      await screenshot(phone, outDir, 'venue-page.png');
    });

    const peer = (label) => `#waiting-room .waiting-peer:has(.waiting-label:text-is("${label}"))`;
    await step('Admit gives Ana the side, and the venue page sees her leave', async () => {
      await page.selectOption(`${peer('Camera Ana')} select.admit-stream`, stream);
      await page.click(`${peer('Camera Ana')} button.admit`);
      await page.waitForSelector(peer('Camera Ana'), { state: 'detached', timeout: 10_000 });
      await page.waitForSelector(`section.stream[data-stream="${stream}"] .peer[data-role="sender"][data-status="registered"]`, {
        state: 'attached',
        timeout: 10_000,
      });
      await phone.waitForFunction(() => document.querySelectorAll('#op-waiting-list .op-waiting-peer[data-state="left"]').length === 1, null, { timeout: 10_000 });
    });

    await step('"New stream…" makes Ben a stream of his own', async () => {
      await page.selectOption(`${peer('Camera Ben')} select.admit-stream`, '+new');
      await page.fill(`${peer('Camera Ben')} input.admit-new`, newStream);
      await page.click(`${peer('Camera Ben')} button.admit`);
      await page
        .waitForSelector(`section.stream[data-stream="${newStream}"] .peer[data-role="sender"][data-status="registered"]`, {
          state: 'attached',
          timeout: 10_000,
        })
        .catch(async (e) => {
          const room = await page.$eval('#waiting-room', (n) => n.innerText);
          throw new StepError(`${e.message}; the waiting room says: ${room}`);
        });
      if ((await page.$$('#waiting-room .waiting-peer')).length !== 0) throw new StepError('the room is not empty');
    });
    problems.push(...(await cspViolations(page, 'dashboard')));

    return finish(problems);
  } finally {
    await close(browser);
  }
}

run('admission', main);
