// Browser test of the camera-operator page (GET /j/:session?t=STREAM_TOKEN), run by the Rust
// test suite as
//   node tests/browser/operator.mjs
// with OPERATOR_URL (the page of the sender side, which the dashboard makes a caller device), DASHBOARD_URL (the session's dashboard),
// BAD_URL (the page with a token that is not valid), STREAM, OUT_DIR and optionally CHROMIUM.
//
// The dashboard's side control makes the sender an SRT caller device; at phone size (390x844)
// the page shows the device's settings, turns red when the dashboard
// sets ON AIR and shows a cue sent from the dashboard; a wrong token shows the error page.
// Exit status 0 only after "OK". Tokens are redacted.

import { mkdirSync } from 'node:fs';
import { close, CONNECT_409, cspViolations, finish, launch, log, requireEnv, run, screenshot, step, StepError, watchedPage } from './lib.mjs';

const CUE = 'Wide shot, then slow push in';

async function main() {
  const operatorUrl = requireEnv('OPERATOR_URL');
  const dashboardUrl = requireEnv('DASHBOARD_URL');
  const badUrl = requireEnv('BAD_URL');
  const stream = requireEnv('STREAM');
  const outDir = requireEnv('OUT_DIR');
  mkdirSync(outDir, { recursive: true });

  const problems = [];
  let browser;
  try {
    browser = await step('launch chromium', launch);
    const page = await watchedPage(browser, 'operator page', problems, { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });

    // the dashboard asks for connection strings; a device stream has them at once
    const dashboard = await watchedPage(browser, 'dashboard', problems, { viewport: { width: 1280, height: 900 } }, { expected: [CONNECT_409] });
    await step('open the dashboard', async () => {
      const res = await dashboard.goto(dashboardUrl, { waitUntil: 'domcontentloaded', timeout: 30_000 });
      if (!res || res.status() !== 200) throw new StepError(`answered HTTP ${res ? res.status() : 'nothing'}`);
      await dashboard.waitForSelector(`section.stream[data-stream="${stream}"]`, { timeout: 15_000 });
    });

    await step('the dashboard makes the sender an SRT caller device', async () => {
      const box = `section.stream[data-stream="${stream}"] .peer[data-role="sender"] details.side-holder-box`;
      await dashboard.click(`${box} summary`);
      await dashboard.selectOption(`${box} select.side-holder`, 'caller');
      await dashboard.click(`${box} button.side-apply`);
      await dashboard.waitForFunction(
        (sel) => (document.querySelector(sel + ' .latency-msg') || {}).textContent === 'Changed.',
        box,
        { timeout: 10_000 },
      );
      await dashboard.waitForSelector(
        `section.stream[data-stream="${stream}"] .peer[data-role="sender"] .device-row:not([hidden])`,
        { timeout: 10_000 },
      );
    });

    await step('open the camera-operator page at phone size', async () => {
      const res = await page.goto(operatorUrl, { waitUntil: 'domcontentloaded', timeout: 30_000 });
      if (!res || res.status() !== 200) throw new StepError(`answered HTTP ${res ? res.status() : 'nothing'}`);
      await page.waitForSelector('#op-live[data-status="live"]', { timeout: 15_000 });
      const tally = await page.$eval('body', (b) => b.dataset.tally);
      if (tally !== 'off') throw new StepError(`tally starts as ${tally}`);
    });

    await step('it shows the device settings', async () => {
      const fields = await page.$$eval('#op-fields dt', (l) => l.map((n) => n.textContent.trim()));
      for (const want of ['Mode', 'Host', 'Port', 'Passphrase', 'Stream ID', 'SRT URL']) {
        if (!fields.includes(want)) throw new StepError(`no ${want} among ${fields.join(', ')}`);
      }
      const url = await page.$eval('#op-fields', (n) => n.textContent);
      if (!/srt:\/\/[^ ]+mode=caller/.test(url)) throw new StepError('no srt:// caller URL shown');
      const qr = await page.$eval('#op-qr', (img) => img.complete && img.naturalWidth > 0);
      if (!qr) throw new StepError('the settings QR code did not load');
    });

    await step('ON AIR on the dashboard turns the page red', async () => {
      await dashboard.click(`section.stream[data-stream="${stream}"] button.tally[data-state="on-air"]`);
      await page.waitForSelector('body[data-tally="on-air"]', { timeout: 10_000 });
      const text = await page.$eval('#op-tally-text', (n) => n.textContent.trim());
      if (text !== 'ON AIR') throw new StepError(`the tally says "${text}"`);
      const bg = await page.$eval('body', (b) => getComputedStyle(b).backgroundColor);
      const [r, g, b] = (bg.match(/\d+/g) || []).map(Number);
      if (!(r > 150 && g < 60 && b < 60)) throw new StepError(`the page is not red: ${bg}`);
    });

    await step('a cue sent from the dashboard shows on the page', async () => {
      await dashboard.fill(`#cue-input-${stream}`, CUE);
      await dashboard.click(`section.stream[data-stream="${stream}"] button.send-cue`);
      await page.waitForFunction((cue) => {
        const box = document.getElementById('op-cue');
        return box && !box.hidden && document.getElementById('op-cue-text').textContent === cue;
      }, CUE, { timeout: 10_000 });
      await screenshot(page, outDir, 'operator-on-air.png');
    });
    problems.push(...(await cspViolations(page, 'operator page')));

    const strangerPage = await watchedPage(browser, 'wrong token', problems, { viewport: { width: 390, height: 844 } }, { documentUrl: badUrl });
    await step('a wrong token shows the error page', async () => {
      const res = await strangerPage.goto(badUrl, { waitUntil: 'domcontentloaded', timeout: 30_000 });
      if (!res || res.status() !== 401) throw new StepError(`answered HTTP ${res ? res.status() : 'nothing'}`);
      const title = await strangerPage.$eval('h1', (n) => n.textContent.trim());
      if (!/token/i.test(title)) throw new StepError(`the error page says "${title}"`);
      log(`  "${title}"`);
      await screenshot(strangerPage, outDir, 'operator-wrong-token.png');
    });

    return finish(problems);
  } finally {
    await close(browser);
  }
}

run('operator', main);
