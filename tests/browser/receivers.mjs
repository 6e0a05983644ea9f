// Browser test of a stream with several receivers on the dashboard, run by the Rust test suite
// as
//   node tests/browser/receivers.mjs
// with DASHBOARD_URL (a session with a 3-receiver stream, two of its links up), STREAM (that
// stream), OUT_DIR and optionally CHROMIUM.
//
// Its wall tile counts the linked receivers and shows what the sender sends in all; its card
// lists each receiver with its own state and figures. Exit status 0 only after "OK". Tokens
// are redacted.

import { mkdirSync } from 'node:fs';
import { close, CONNECT_409, cspViolations, finish, launch, requireEnv, run, screenshot, step, StepError, watchedPage } from './lib.mjs';

async function main() {
  const url = requireEnv('DASHBOARD_URL');
  const stream = requireEnv('STREAM');
  const outDir = requireEnv('OUT_DIR');
  mkdirSync(outDir, { recursive: true });
  const problems = [];
  let browser;
  try {
    browser = await step('launch chromium', launch);
    const page = await watchedPage(browser, 'dashboard', problems, { viewport: { width: 1280, height: 900 } }, { expected: [CONNECT_409] });

    await step('the wall tile counts the linked receivers and the total sent', async () => {
      const res = await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 30_000 });
      if (!res || res.status() !== 200) throw new StepError(`answered HTTP ${res ? res.status() : 'nothing'}`);
      const tile = `#wall .tile[data-stream="${stream}"]`;
      await page.waitForFunction(
        (sel) => {
          const t = document.querySelector(sel);
          return t && t.querySelector('.tile-receivers').textContent === '2/3 receivers';
        },
        tile,
        { timeout: 15_000 },
      );
      const rate = await page.$eval(tile, (t) => t.querySelector('.tile-metric').textContent);
      if (!rate.includes('5')) throw new StepError(`the tile shows ${rate}, not the 5 Mbit/s sent in all`);
      await screenshot(page, outDir, 'receivers-wall.png');
    });

    await step('the card lists each receiver with its state', async () => {
      await page.click(`#wall .tile[data-stream="${stream}"]`);
      const card = `section.stream[data-stream="${stream}"]`;
      await page.waitForSelector(`${card} .receivers-panel .receiver-row[data-receiver="3"]`, { state: 'visible', timeout: 10_000 });
      const rows = await page.$$eval(`${card} .receiver-row`, (l) =>
        l.map((r) => [r.dataset.receiver, r.dataset.state, r.querySelector('.receiver-figures').textContent]),
      );
      const states = rows.map((r) => r[0] + ':' + r[1]).join(' ');
      if (states !== '1:CONNECTED 2:CONNECTED 3:READY') throw new StepError(`the rows say ${states}`);
      if (!rows[0][2].includes('RTT')) throw new StepError(`receiver 1 shows no figures: ${rows[0][2]}`);
      const total = await page.$eval(`${card} .receivers-total`, (n) => n.textContent);
      if (!total.startsWith('2 of 3 linked')) throw new StepError(`the total says ${total}`);
      await page.$eval(`${card} .receivers-panel`, (n) => n.scrollIntoView());
      await screenshot(page, outDir, 'receivers-card.png');
    });
    problems.push(...(await cspViolations(page, 'dashboard')));

    return finish(problems);
  } finally {
    await close(browser);
  }
}

run('receivers', main);
