// Drives Debian's chromium (headless, fake microphone playing a WAV) through graph-sim's
// softphone page: join the given call, listen, check what comes back, screenshot, hang up.
// Usage: node softphone.mjs <page url> <wav> <screenshot.png> <call id> [tone hz]
// Prints one JSON object on stdout; diagnostics go to stderr.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [url, wav, screenshot, callId, toneArg] = process.argv.slice(2);
if (!url || !wav || !screenshot || !callId) {
  console.error('usage: node softphone.mjs <url> <wav> <screenshot> <call id> [tone hz]');
  process.exit(2);
}
const toneHz = Number(toneArg || 1000);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const name = 'Browser tester';
const listenMs = Number(process.env.SOFTPHONE_LISTEN_MS || 6000);

const started = Date.now();
const userDataDir = mkdtempSync(join(tmpdir(), 'softphone-chromium-'));
const result = { ok: false, name, steps: [], consoleErrors: [] };
const step = (s) => result.steps.push({ step: s, ms: Date.now() - started });

let context;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    viewport: { width: 1100, height: 640 },
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--allow-loopback-in-peer-connection',
      '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
      `--use-file-for-fake-audio-capture=${wav}`,
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
  step('launched');
  const page = context.pages()[0] || (await context.newPage());
  page.on('console', (m) => { if (m.type() === 'error') result.consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => result.consoleErrors.push(String(e)));
  await page.goto(url);
  await page.locator(`li[data-call-id="${callId}"]`).click({ timeout: 15000 });
  await page.fill('#name', name);
  await page.click('#join');
  await page.waitForFunction(() => window.softphone.session.connection === 'connected', null, { timeout: 15000 });
  step('media connected');
  result.sourceId = await page.evaluate(() => window.softphone.session.sourceId);

  // Listen: how often the tone stands out of what the page hears.
  let samples = 0;
  let detected = 0;
  let bestMargin = -Infinity;
  const until = Date.now() + listenMs;
  while (Date.now() < until) {
    await page.waitForTimeout(100);
    const h = await page.evaluate((hz) => window.softphone.heard(hz), toneHz);
    if (!h || !Number.isFinite(h.level) || !Number.isFinite(h.median)) continue;
    samples += 1;
    const margin = h.level - h.median;
    bestMargin = Math.max(bestMargin, margin);
    if (margin > 25 && h.level > -70) detected += 1;
  }
  result.heard = { toneHz, samples, detected, bestMarginDb: bestMargin };
  result.inbound = await page.evaluate(() => window.softphone.inbound());
  step('listened');

  // The roster as the page shows it, once the bot, the simulated users and this person are in.
  await page.waitForFunction(() => document.querySelectorAll('#roster tr').length >= 3, null, { timeout: 5000 }).catch(() => {});
  result.roster = await page.$$eval('#roster tr', (rows) => rows.map((r) => ({
    name: r.querySelector('td.name')?.textContent ?? '',
    sourceId: Number(r.dataset.sourceId),
    speaking: !!r.querySelector('.dot.speaking'),
    badges: Array.from(r.querySelectorAll('.badge')).map((b) => b.textContent),
  })));
  result.sendMeter = await page.textContent('#senddb');
  result.hearMeter = await page.textContent('#heardb');
  await page.screenshot({ path: screenshot });
  step('screenshot');

  await page.click('#hangup');
  await page.waitForSelector('#setup', { state: 'visible', timeout: 5000 });
  step('hung up');
  result.ok = true;
} catch (e) {
  result.error = String(e && e.stack ? e.stack : e);
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
  result.totalMs = Date.now() - started;
  process.stdout.write(JSON.stringify(result) + '\n');
}
