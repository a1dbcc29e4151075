// Looks at every page as people see it: a phone (390 px) and a desktop (1280 px), light and
// dark, the home page, a running and a finished job, the dashboard with jobs, the showcase and
// the not-found page. Writes one PNG per view and, for a quick look, one contact sheet per
// width (sheet-phone.png, sheet-desktop.png).
// Usage: node look.mjs [base-url] [out-dir]   (a server must be running)
import { mkdirSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { chromium } from "@playwright/test";

const base = process.argv[2] ?? "http://127.0.0.1:3000";
const out = resolve(process.argv[3] ?? "/tmp/sse-progress-look");
mkdirSync(out, { recursive: true });
const widths = { phone: { width: 390, height: 844 }, desktop: { width: 1280, height: 800 } };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const hydrated = (page) => page.locator('[data-hydrated="true"]').waitFor();
const start = async (page, kind, params) => {
  const response = await page.request.post(`${base}/api/jobs`, { data: { kind, params } });
  return (await response.json()).id;
};
const shots = { phone: [], desktop: [] };
for (const [name, viewport] of Object.entries(widths)) {
  for (const colorScheme of ["light", "dark"]) {
    const context = await browser.newContext({ viewport, colorScheme });
    const page = await context.newPage();
    const shot = async (what) => {
      const file = `${name}-${colorScheme}-${what}.png`;
      await page.screenshot({ path: `${out}/${file}`, fullPage: true });
      shots[name].push(file);
    };
    await page.goto(base);
    await hydrated(page);
    await shot("home");
    const running = await start(page, "checksum", { size_mib: 256, chunk_delay_ms: 60 });
    await page.goto(`${base}/jobs/${running}`);
    await hydrated(page);
    await page.waitForFunction(() => Number(document.querySelector('[role="progressbar"]')?.getAttribute("aria-valuenow")) >= 5);
    await shot("job-running");
    const done = await start(page, "checksum", { size_mib: 4, chunk_delay_ms: 0 });
    await start(page, "failing", { step_ms: 100 });
    await page.goto(`${base}/jobs/${done}`);
    await hydrated(page);
    await page.getByTestId("job-status").getByText("Completed").waitFor({ timeout: 30_000 });
    await shot("job-completed");
    await page.goto(`${base}/jobs`);
    await hydrated(page);
    await page.getByTestId("job-status").getByText("Failed").waitFor({ timeout: 30_000 });
    await shot("dashboard");
    await page.goto(`${base}/showcase`);
    await hydrated(page);
    await page.getByRole("button", { name: "Start Processing" }).click();
    await page.waitForURL(/showcase\?job=/);
    await page.locator('[data-testid="phase-progress"][data-mode="determinate"]').waitFor();
    await shot("showcase");
    await page.goto(`${base}/jobs/00000000-0000-4000-8000-000000000000`);
    await shot("not-found");
    await context.close();
  }
}
// One sheet per width: every view side by side, scaled down.
for (const [name, files] of Object.entries(shots)) {
  const scale = name === "phone" ? 0.5 : 0.3;
  const cells = files
    .map((f) => `<figure><figcaption>${f}</figcaption><img src="${f}" style="width:${widths[name].width * scale}px"></figure>`)
    .join("");
  const html = `<html><body style="margin:0;background:#888;font:12px sans-serif"><div style="display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start">${cells}</div></body></html>`;
  writeFileSync(`${out}/sheet-${name}.html`, html);
  const page = await browser.newPage({ viewport: { width: name === "phone" ? 1600 : 2400, height: 900 } });
  await page.goto(`file://${out}/sheet-${name}.html`);
  await page.waitForLoadState("load");
  await page.screenshot({ path: `${out}/sheet-${name}.png`, fullPage: true });
  await page.close();
}
await browser.close();
console.log(`views in ${out}: ${[...shots.phone, ...shots.desktop].length}, sheets sheet-phone.png and sheet-desktop.png`);
