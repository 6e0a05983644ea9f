// Browser test of the page that creates a session (GET /), run by the Rust test suite as
//   node tests/browser/create.mjs
// with START_URL (the server's start page), KEY (the server's create key), NAME (the session to
// create), OUT_DIR (screenshots go there) and optionally CHROMIUM.
//
// A wrong key is refused on the page with the server's reason; the right key creates the
// session and opens its dashboard. Exit status 0 only after "OK". Tokens are redacted.

import { mkdirSync } from 'node:fs';
import { close, CSP_PROBE, cspViolations, finish, launch, log, requireEnv, run, screenshot, step, StepError, watch } from './lib.mjs';

async function main() {
  const startUrl = requireEnv('START_URL');
  const key = requireEnv('KEY');
  const name = requireEnv('NAME');
  const outDir = requireEnv('OUT_DIR');
  mkdirSync(outDir, { recursive: true });

  const problems = [];
  let browser;
  try {
    browser = await step('launch chromium', launch);
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.addInitScript(CSP_PROBE);
    const page = await context.newPage();
    // the wrong key's 401 is provoked on purpose; the new dashboard asks for connection
    // strings before both sides registered (409)
    watch(page, 'start page', problems, {
      expected: [
        { status: 401, url: /\/api\/session$/ },
        { status: 409, url: /\/api\/session\/[^/]+\/connect(\?|$)/ },
      ],
    });

    await step('open the start page', async () => {
      const res = await page.goto(startUrl, { waitUntil: 'domcontentloaded', timeout: 30_000 });
      if (!res || res.status() !== 200) throw new StepError(`answered HTTP ${res ? res.status() : 'nothing'}`);
      if (!(await page.isVisible('#create-key'))) throw new StepError('no visible create-key field on a server that needs one');
    });

    await step('submit with a wrong key: refused on the page', async () => {
      await page.fill('#create-name', name);
      await page.fill('#create-streams', 'cam1, cam2');
      await page.fill('#create-key', 'not-the-key');
      await page.click('#create-submit');
      try {
        await page.waitForSelector('#create-message:not([hidden])', { timeout: 10_000 });
      } catch (_) {
        throw new StepError('no message after a refused creation');
      }
      const text = await page.$eval('#create-message', (n) => n.textContent.trim());
      if (!/create key/i.test(text)) throw new StepError(`the message does not name the create key: "${text}"`);
      if (new URL(page.url()).pathname !== '/') throw new StepError(`left the page: ${page.url()}`);
      log(`  "${text}"`);
      await screenshot(page, outDir, 'refused.png');
    });

    await step('submit with the right key: the new dashboard opens', async () => {
      await page.fill('#create-key', key);
      await Promise.all([
        page.waitForURL((u) => u.pathname === `/s/${name}` && u.searchParams.has('t'), { timeout: 15_000 }),
        page.click('#create-submit'),
      ]);
      await page.waitForSelector('section.stream[data-stream="cam2"]', { state: 'attached', timeout: 15_000 });
      const shown = await page.$eval('#session-name', (n) => n.textContent.trim());
      if (shown !== name) throw new StepError(`the dashboard shows session "${shown}"`);
      const streams = await page.$$eval('section.stream', (l) => l.map((s) => s.getAttribute('data-stream')));
      if (streams.join(',') !== 'cam1,cam2') throw new StepError(`streams shown: ${streams.join(',')}`);
      log(`  dashboard of ${shown} with ${streams.join(', ')}`);
      await screenshot(page, outDir, 'created.png');
    });
    problems.push(...(await cspViolations(page, 'dashboard')));

    return finish(problems);
  } finally {
    await close(browser);
  }
}

run('create', main);
