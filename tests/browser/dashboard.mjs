// Browser test of the Punch operator dashboard, run by the Rust test suite as
//   node tests/browser/dashboard.mjs
// with DASHBOARD_URL (dashboard URL with the admin token), BAD_URL (same page, wrong token),
// STREAM (a stream whose link is up and reporting health), OUT_DIR (screenshots go there) and
// optionally CHROMIUM (browser binary, default /usr/bin/chromium).
//
// Progress goes to stdout, the failure reason to stderr; exit status 0 only after "OK".
// Tokens are redacted from everything printed.

import { mkdirSync } from 'node:fs';
import { close, CSP_PROBE, cspViolations, finish, launch, log, requireEnv, run, screenshot, step, StepError, watch } from './lib.mjs';

async function describeStream(page, selector) {
  return page
    .evaluate((sel) => {
      const s = document.querySelector(sel);
      const banner = document.getElementById('banner');
      const live = document.getElementById('live');
      const state = document.getElementById('session-state');
      const parts = [];
      if (!s) parts.push('stream section not found');
      else {
        parts.push(`data-level=${s.getAttribute('data-level')}`, `data-state=${s.getAttribute('data-state')}`);
        const reason = s.querySelector('.level-reason');
        if (reason && reason.textContent) parts.push(`level reason "${reason.textContent}"`);
        const pressed = s.querySelector('button.tally[aria-pressed="true"]');
        parts.push(`tally pressed=${pressed ? pressed.getAttribute('data-state') : 'none'}`);
      }
      parts.push(`session state=${state ? state.textContent : '?'}`, `live=${live ? live.textContent : '?'}`);
      if (banner && !banner.hidden) parts.push(`banner "${banner.textContent}"`);
      return parts.join(', ');
    }, selector)
    .catch((e) => `page not inspectable: ${e.message}`);
}

async function main() {
  const dashboardUrl = requireEnv('DASHBOARD_URL');
  const badUrl = requireEnv('BAD_URL');
  const stream = requireEnv('STREAM');
  const outDir = requireEnv('OUT_DIR');
  mkdirSync(outDir, { recursive: true });

  const problems = [];
  const sectionSel = `section.stream[data-stream="${stream.replace(/["\\]/g, '\\$&')}"]`;
  let browser;
  try {
    browser = await step('launch chromium', launch);
    const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    await context.addInitScript(CSP_PROBE);

    // 1 + 2: open the dashboard and wait for a healthy link.
    const page = await context.newPage();
    // connection strings before both sides registered answer 409
    watch(page, 'dashboard', problems, { expected: [{ status: 409, url: /\/api\/session\/[^/]+\/connect(\?|$)/ }] });
    page.on('dialog', (d) => d.dismiss().catch(() => {}));

    await step('open the dashboard', async () => {
      const res = await page.goto(dashboardUrl, { waitUntil: 'domcontentloaded', timeout: 30_000 });
      if (!res) throw new StepError('no response');
      if (res.status() !== 200) {
        const body = (await res.text().catch(() => '')).slice(0, 300);
        throw new StepError(`answered HTTP ${res.status()}: ${body}`);
      }
      const header = await page.evaluate(() => ({
        name: document.querySelector('#session-name')?.textContent || '',
        state: document.querySelector('#session-state')?.textContent || '',
        live: !!document.querySelector('#live'),
        close: !!document.querySelector('#close-session'),
        banner: !!document.querySelector('#banner'),
      }));
      if (!header.name || !header.state) throw new StepError(`header incomplete: ${JSON.stringify(header)}`);
      if (!header.live || !header.close || !header.banner) {
        throw new StepError(`missing #live, #close-session or #banner: ${JSON.stringify(header)}`);
      }
      log(`  session ${header.name}, state ${header.state}`);
    });

    await step(`wait for stream ${stream} to report data-level="green"`, async () => {
      try {
        await page.waitForSelector(`${sectionSel}[data-level="green"]`, { state: 'attached', timeout: 30_000 });
      } catch (_) {
        throw new StepError(`not green after 30 s: ${await describeStream(page, sectionSel)}`);
      }
    });

    // 3: QR codes.
    await step('check the QR codes loaded', async () => {
      const qrSel = `${sectionSel} img.qr`;
      try {
        await page.waitForFunction(
          (sel) => {
            const imgs = Array.from(document.querySelectorAll(sel));
            return imgs.length >= 2 && imgs.every((i) => i.complete);
          },
          qrSel,
          { timeout: 10_000 },
        );
      } catch (_) {
        throw new StepError('the sender and receiver QR images did not finish loading within 10 s');
      }
      const imgs = await page.$$eval(qrSel, (list) =>
        list.map((i) => ({ role: i.getAttribute('data-role'), src: i.getAttribute('src'), w: i.naturalWidth, h: i.naturalHeight })),
      );
      const roles = imgs.map((i) => i.role).sort().join(',');
      if (roles !== 'receiver,sender') throw new StepError(`expected one sender and one receiver QR, found roles [${roles}]`);
      const broken = imgs.filter((i) => !(i.w > 0));
      if (broken.length) {
        throw new StepError(`QR image failed to load: ${broken.map((i) => `${i.role} ${i.src}`).join('; ')}`);
      }
      log(`  ${imgs.map((i) => `${i.role} ${i.w}x${i.h}`).join(', ')}`);
    });

    // 4: tally round trip through the server.
    await step('click tally on-air and wait for the view to confirm it', async () => {
      await page.click(`${sectionSel} button.tally[data-state="on-air"]`, { timeout: 10_000 });
      try {
        await page.waitForSelector(`${sectionSel} button.tally[data-state="on-air"][aria-pressed="true"]`, {
          state: 'attached',
          timeout: 10_000,
        });
      } catch (_) {
        throw new StepError(`on-air not pressed after 10 s: ${await describeStream(page, sectionSel)}`);
      }
      const shown = await page.$eval(`${sectionSel} .tally-state`, (n) => n.textContent.trim());
      if (shown !== 'on-air') throw new StepError(`.tally-state shows "${shown}", expected "on-air"`);
      const others = await page.$$eval(`${sectionSel} button.tally:not([data-state="on-air"])`, (list) =>
        list.map((b) => b.getAttribute('aria-pressed')),
      );
      if (others.some((v) => v !== 'false')) throw new StepError(`other tally buttons not released: ${others.join(',')}`);
    });

    // 5: screenshot.
    await step('screenshot the dashboard', async () => {
      await screenshot(page, outDir, 'dashboard.png');
    });
    problems.push(...(await cspViolations(page, 'dashboard')));

    // 6: the error page for a wrong token.
    const bad = await context.newPage();
    watch(bad, 'error page', problems, { documentUrl: badUrl });
    await step('open the dashboard with a wrong token', async () => {
      const res = await bad.goto(badUrl, { waitUntil: 'load', timeout: 30_000 });
      if (!res) throw new StepError('no response');
      try {
        await bad.waitForSelector('body.error-page h1', { state: 'attached', timeout: 10_000 });
      } catch (_) {
        const body = (await bad.content().catch(() => '')).slice(0, 300);
        throw new StepError(`HTTP ${res.status()} without body.error-page and an h1: ${body}`);
      }
      const title = await bad.$eval('body.error-page h1', (n) => n.textContent.trim());
      if (!title) throw new StepError('the error page h1 is empty');
      log(`  HTTP ${res.status()}: "${title}"`);
      await screenshot(bad, outDir, 'error.png');
    });
    problems.push(...(await cspViolations(bad, 'error page')));

    // 1 (end): anything the browser complained about fails the test.
    return finish(problems);
  } finally {
    await close(browser);
  }
}

run('dashboard', main);
