import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import puppeteer, { Browser, Page } from 'puppeteer-core';

/** Where screenshots go (git-ignored): test-artifacts/ui/<page>-<light|dark>-<desktop|phone>.png */
export const ARTIFACTS_DIR = path.join(__dirname, '../../test-artifacts/ui');

export const VIEWPORTS = {
  desktop: { width: 1280, height: 800, deviceScaleFactor: 1 },
  phone: { width: 390, height: 844, deviceScaleFactor: 1, isMobile: true, hasTouch: true },
} as const;

/**
 * Debian's Chromium (`apt-get install chromium`; scripts/test-prerequisites.mjs installs it), headless.
 * As root it needs --no-sandbox: the sandbox refuses to run as root.
 */
export async function launchChromium(): Promise<Browser> {
  const executablePath = execFileSync('sh', ['-c', 'command -v chromium'], { encoding: 'utf8' }).trim();
  return puppeteer.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
  });
}

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: Array<{ target: string[]; failureSummary?: string }>;
}

/**
 * Runs axe-core in the page and returns the serious and critical violations. The pages' CSP allows only
 * their own script, so the test lets the injected one through (setBypassCSP before the page loads).
 */
export async function seriousAccessibilityViolations(page: Page): Promise<AxeViolation[]> {
  await page.addScriptTag({ content: fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8') });
  const violations = await page.evaluate(async () => {
    const axe = (globalThis as unknown as { axe: { run(): Promise<{ violations: AxeViolation[] }> } }).axe;
    return (await axe.run()).violations;
  });
  return violations
    .filter((violation) => violation.impact === 'serious' || violation.impact === 'critical')
    .map(({ id, impact, help, nodes }) => ({ id, impact, help, nodes: nodes.map(({ target, failureSummary }) => ({ target, failureSummary })) }));
}

/**
 * Looks at the page as it is in light and dark, at desktop and phone width: a screenshot of each, and the
 * accessibility check in each (contrast differs between the schemes). Returns what axe found, by variant.
 */
export async function inspectPage(page: Page, name: string): Promise<Record<string, AxeViolation[]>> {
  fs.mkdirSync(ARTIFACTS_DIR, { recursive: true });
  const found: Record<string, AxeViolation[]> = {};
  const url = page.url();
  for (const scheme of ['light', 'dark'] as const) {
    for (const [size, viewport] of Object.entries(VIEWPORTS)) {
      await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);
      await page.setViewport(viewport);
      await page.goto(url, { waitUntil: 'load' });
      await page.screenshot({ path: path.join(ARTIFACTS_DIR, `${name}-${scheme}-${size}.png`) as `${string}.png`, fullPage: true });
      const violations = await seriousAccessibilityViolations(page);
      if (violations.length > 0) found[`${scheme}-${size}`] = violations;
    }
  }
  await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'light' }]);
  await page.setViewport(VIEWPORTS.desktop);
  await page.goto(url, { waitUntil: 'load' });
  return found;
}
