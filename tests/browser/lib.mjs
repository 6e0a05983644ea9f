// Shared by the browser tests: steps with readable failures, redaction of tokens, watched pages
// (console errors, failed assets, CSP violations) and the final check.

import path from 'node:path';
import { chromium } from 'playwright-core';

// Below the 120 s the Rust test waits, so a hang ends with this process's own message.
export const WATCHDOG_MS = 100_000;

export class StepError extends Error {}

export function redact(text) {
  return String(text).replace(/([?&](?:t|token)=)[^&#\s"']+/g, '$1<redacted>').replace(/\bp[as]\.[A-Za-z0-9._-]{20,}/g, '<token>');
}

export function log(line) {
  process.stdout.write(redact(line) + '\n');
}

export function requireEnv(name) {
  const value = process.env[name];
  if (!value) throw new StepError(`environment variable ${name} is not set`);
  return value;
}

export async function step(name, fn) {
  log(`- ${name}`);
  try {
    return await fn();
  } catch (e) {
    if (e instanceof StepError) throw new StepError(`${name}: ${e.message}`);
    throw new StepError(`${name}: ${e && e.message ? e.message.split('\n')[0] : e}`);
  }
}

// Console errors, uncaught exceptions, CSP violations and failed /ui/ assets of one page.
// `expected`: HTTP answers the page provokes on purpose ({status, url: RegExp}), which
// Chromium reports as "Failed to load resource"; `tolerated`: other console errors a test
// provokes on purpose (RegExps on their text), such as a WebSocket cut by a dying server.
export function watch(page, label, problems, { documentUrl, expected = [], tolerated = [] } = {}) {
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const text = msg.text();
    if (tolerated.some((t) => t.test(text))) return;
    const where = msg.location() && msg.location().url ? msg.location().url : '';
    // The error page itself (4xx by design) and the favicon Chromium asks for on its own (the
    // pages declare none) are expected too.
    if (/^Failed to load resource: the server responded with a status of/.test(text)) {
      if (documentUrl && where === documentUrl) return;
      if (/^https?:\/\/[^/]+\/favicon\.ico$/.test(where)) return;
      if (expected.some((e) => text.includes(`status of ${e.status}`) && e.url.test(where))) return;
    }
    problems.push(`${label}: console error: ${text}${where ? ` (${where})` : ''}`);
  });
  page.on('pageerror', (err) => problems.push(`${label}: uncaught exception: ${err.message}`));
  page.on('response', (res) => {
    let u;
    try {
      u = new URL(res.url());
    } catch (_) {
      return;
    }
    if (u.pathname.startsWith('/ui/') && res.status() >= 400) {
      problems.push(`${label}: asset ${u.pathname} answered ${res.status()}`);
    }
  });
}

// Records securitypolicyviolation events in the page (init scripts are not subject to CSP).
export const CSP_PROBE = () => {
  window.__punchCspViolations = [];
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__punchCspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'} (${e.sourceFile || ''}:${e.lineNumber || 0})`);
  });
};

export async function cspViolations(page, label) {
  try {
    const list = await page.evaluate(() => window.__punchCspViolations || []);
    return list.map((v) => `${label}: CSP violation: ${v}`);
  } catch (e) {
    return [`${label}: could not read CSP violations: ${e.message}`];
  }
}

// The refusal a dashboard provokes on purpose: connection strings before both sides registered.
export const CONNECT_409 = { status: 409, url: /\/connect(\?|$)/ };

// A page in a browser context of its own (`contextOptions`), with the CSP probe installed and its
// console errors and failed assets going to `problems` under `label` (`watchOptions` as `watch`).
export async function watchedPage(browser, label, problems, contextOptions, watchOptions = {}) {
  const context = await browser.newContext(contextOptions);
  await context.addInitScript(CSP_PROBE);
  const page = await context.newPage();
  watch(page, label, problems, watchOptions);
  return page;
}

// The last step of every test: any problem seen on its pages fails it; otherwise "OK".
export async function finish(problems) {
  await step('check for console errors and CSP violations', async () => {
    if (problems.length) throw new StepError(`${problems.length} problem(s):\n  ${problems.join('\n  ')}`);
  });
  log('OK');
  return 0;
}

// Debian's chromium, headless, nothing fetched from outside.
// TRUST_SPKI (optional): the base64 SHA-256 of a server key's SubjectPublicKeyInfo that
// Chromium is to trust (a test server's certificate from a test CA), and only that one.
export function launch() {
  const trust = process.env.TRUST_SPKI ? [`--ignore-certificate-errors-spki-list=${process.env.TRUST_SPKI}`] : [];
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    timeout: 30_000,
    args: [
      ...trust,
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-quic',
    ],
  });
}

// Saves a screenshot of `page` as OUT_DIR/NAME (the whole page unless fullPage is false) and
// says where.
export async function screenshot(page, outDir, name, { fullPage = true } = {}) {
  const file = path.join(outDir, name);
  await page.screenshot({ path: file, fullPage, timeout: 15_000 });
  log(`  wrote ${file}`);
  return file;
}

// Closes the browser, at most 10 s.
export async function close(browser) {
  if (!browser) return;
  let timer;
  const limit = new Promise((resolve) => {
    timer = setTimeout(resolve, 10_000);
  });
  await Promise.race([browser.close().catch(() => {}), limit]);
  clearTimeout(timer);
}

// Runs `main` under the watchdog; the exit status says whether it printed "OK".
export function run(name, main) {
  const watchdog = setTimeout(() => {
    process.stderr.write(`${name} test: gave up after ${WATCHDOG_MS / 1000} s\n`);
    process.exit(1);
  }, WATCHDOG_MS);
  watchdog.unref();
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      process.stderr.write(redact(`${name} test failed: ${e instanceof StepError ? e.message : e && e.stack ? e.stack : e}`) + '\n');
      process.exitCode = 1;
    },
  );
}
