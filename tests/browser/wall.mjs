// Browser test of the dashboard's wall (sessions with several streams), run by the Rust test
// suite as
//   node tests/browser/wall.mjs
// with DASHBOARD_URL (an 8-stream session's dashboard), ON_AIR (the stream set on air),
// OUT_DIR (screenshots) and optionally CHROMIUM.
//
// At 1920x1080 the wall shows all eight tiles without a scrollbar, the on-air stream's tile says
// so, a click on a tile opens that stream's full card; at phone size the tiles stack in one
// column. Exit status 0 only after "OK". Tokens are redacted.

import { mkdirSync } from 'node:fs';
import { close, CONNECT_409, cspViolations, finish, launch, requireEnv, run, screenshot, step, StepError, watchedPage } from './lib.mjs';

async function main() {
  const url = requireEnv('DASHBOARD_URL');
  const onAir = requireEnv('ON_AIR');
  const outDir = requireEnv('OUT_DIR');
  mkdirSync(outDir, { recursive: true });
  const problems = [];
  let browser;
  try {
    browser = await step('launch chromium', launch);
    // connection strings are asked for before any side registered
    const page = await watchedPage(browser, 'dashboard', problems, { viewport: { width: 1920, height: 1080 } }, { expected: [CONNECT_409] });

    await step('open the dashboard of 8 streams: the wall', async () => {
      const res = await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 30_000 });
      if (!res || res.status() !== 200) throw new StepError(`answered HTTP ${res ? res.status() : 'nothing'}`);
      await page.waitForFunction(() => document.querySelectorAll('#wall .tile').length === 8, null, { timeout: 15_000 });
      if (await page.isVisible('#streams')) throw new StepError('the stream cards show instead of the wall');
    });

    await step('all 8 tiles fit 1920x1080 without scrolling', async () => {
      const fit = await page.evaluate(() => {
        const tiles = Array.from(document.querySelectorAll('#wall .tile')).map((t) => t.getBoundingClientRect());
        return {
          scroll: document.documentElement.scrollHeight,
          height: window.innerHeight,
          width: document.documentElement.scrollWidth,
          inside: tiles.every((r) => r.top >= 0 && r.bottom <= window.innerHeight && r.right <= window.innerWidth),
        };
      });
      if (fit.scroll > fit.height || fit.width > 1920) throw new StepError(`the page scrolls: ${JSON.stringify(fit)}`);
      if (!fit.inside) throw new StepError('a tile is outside the screen');
      const tally = await page.$eval(`#wall .tile[data-stream="${onAir}"]`, (t) => [t.dataset.tally, t.querySelector('.tile-tally').textContent]);
      if (tally[0] !== 'on-air' || tally[1] !== 'ON AIR') throw new StepError(`the on-air tile shows ${tally}`);
      await screenshot(page, outDir, 'wall-1920x1080.png', { fullPage: false });
    });

    await step('a click on a tile opens its stream card', async () => {
      await page.click('#wall .tile[data-stream="cam3"]');
      await page.waitForSelector('section.stream[data-stream="cam3"]', { state: 'visible', timeout: 5_000 });
      const inView = await page.$eval('section.stream[data-stream="cam3"]', (n) => {
        const r = n.getBoundingClientRect();
        return r.top < window.innerHeight && r.bottom > 0;
      });
      if (!inView) throw new StepError('the card of cam3 is not on screen');
      await page.click('#show-wall');
      await page.waitForSelector('#wall', { state: 'visible', timeout: 5_000 });
    });
    problems.push(...(await cspViolations(page, 'dashboard')));

    const phone = await watchedPage(browser, 'phone', problems, { viewport: { width: 390, height: 844 }, isMobile: true }, { expected: [CONNECT_409] });
    await step('at phone size the tiles stack in one column', async () => {
      await phone.goto(url, { waitUntil: 'domcontentloaded', timeout: 30_000 });
      await phone.waitForFunction(() => document.querySelectorAll('#wall .tile').length === 8, null, { timeout: 15_000 });
      const lefts = await phone.$$eval('#wall .tile', (l) => l.map((t) => Math.round(t.getBoundingClientRect().left)));
      if (new Set(lefts).size !== 1) throw new StepError(`tiles in several columns: ${lefts}`);
      const wide = await phone.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
      if (!wide) throw new StepError('the page scrolls sideways');
      await screenshot(phone, outDir, 'wall-phone.png');
    });

    return finish(problems);
  } finally {
    await close(browser);
  }
}

run('wall', main);
