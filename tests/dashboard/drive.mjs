// drive.mjs - a headless Chromium that a test (or scripts/dashboard-shot) steers line by line.
//
// Reads one command a line on stdin and answers each with one JSON line on stdout:
//   open URL          load the page (1280x800 unless `viewport` said otherwise)
//   viewport W H      resize the window
//   wait MS           sleep
//   live MS           wait (at most MS) until the page says its stream is live
//   read              what the page shows: status, totals, tables (as text), overflow
//   shot PATH         write a PNG screenshot of the whole page
//   quit              close the browser and exit
// An answer is {"ok": true, ...} or {"error": "..."}. The browser is Debian's
// chromium (CHROMIUM overrides the path), driven over the DevTools protocol by
// puppeteer-core (pinned in package-lock.json): test tooling only.
import { createInterface } from 'node:readline';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';

const profile = mkdtempSync(join(tmpdir(), 'checkout-chromium-'));
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  userDataDir: profile,
  // root in a container: no sandbox; no GPU here
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--lang=en-US'],
  defaultViewport: { width: 1280, height: 800 },
  protocolTimeout: 20000,
});
const page = await browser.newPage();
page.setDefaultTimeout(10000);

// The page's figures as a person reads them: the text in each element.
function readPage() {
  const text = (id) => document.getElementById(id)?.textContent ?? null;
  const rows = (id) => [...document.getElementById(id).tBodies[0].rows].map((r) => [...r.cells].map((c) => c.textContent));
  return {
    state: document.getElementById('status').dataset.state,
    status: text('status'),
    total_orders: text('total-orders'),
    total_units: text('total-units'),
    total_revenue: text('total-revenue'),
    minute_orders: text('minute-orders'),
    minute_revenue: text('minute-revenue'),
    low_threshold: text('low-threshold'),
    top_skus: rows('top-skus'),
    low_stock: rows('low-stock'),
    lag: rows('lag'),
    workers: rows('workers'),
    outcomes: rows('outcomes'),
    relay: text('relay-pending'),
    relay_detail: text('relay-oldest'),
    order_bars: document.querySelectorAll('#orders-chart rect.bar').length,
    revenue_bars: document.querySelectorAll('#revenue-chart rect.bar').length,
    errors: [...document.querySelectorAll('.note.error')].filter((e) => !e.hidden).map((e) => e.textContent),
    // wider than the window: a phone would have to scroll sideways
    overflow: document.documentElement.scrollWidth > window.innerWidth,
    // and which elements stick out, to say where
    sticking_out: [...document.querySelectorAll('body *')]
      .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 0.5)
      .slice(0, 5).map((e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')),
  };
}

const consoleErrors = [];
page.on('pageerror', (e) => consoleErrors.push(String(e)));

async function run(line) {
  const [cmd, ...args] = line.trim().split(/\s+/);
  switch (cmd) {
    case 'open':
      await page.goto(args[0], { waitUntil: 'load' });
      return {};
    case 'viewport':
      await page.setViewport({ width: Number(args[0]), height: Number(args[1]) });
      return {};
    case 'wait':
      await new Promise((resolve) => setTimeout(resolve, Number(args[0])));
      return {};
    case 'live':
      await page.waitForSelector('#status[data-state="live"]', { timeout: Number(args[0]) });
      return {};
    case 'read':
      return { page: await page.evaluate(readPage), page_errors: consoleErrors };
    case 'shot':
      await page.screenshot({ path: args[0], fullPage: true });
      return {};
    case 'quit':
      return null;
    default:
      throw new Error('unknown command: ' + cmd);
  }
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let answer;
  try {
    answer = await run(line);
  } catch (e) {
    answer = { error: String(e && e.message ? e.message : e) };
  }
  if (answer === null) break;
  process.stdout.write(JSON.stringify({ ok: !answer.error, ...answer }) + '\n');
}
await browser.close();
rmSync(profile, { recursive: true, force: true });
process.stdout.write(JSON.stringify({ ok: true, bye: true }) + '\n');
