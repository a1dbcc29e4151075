// Takes the README's screenshots: the job page mid-job (light and dark), the showcase and the
// dashboard.
// Usage: node screenshot.mjs [base-url] [out-dir]   (a server must be running)
import { chromium } from "@playwright/test";

const base = process.argv[2] ?? "http://127.0.0.1:3000";
const out = process.argv[3] ?? "../docs";
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"],
});
for (const colorScheme of ["light", "dark"]) {
  const page = await browser.newPage({ viewport: { width: 900, height: 720 }, colorScheme });
  await page.goto(base);
  await page.locator('[data-hydrated="true"]').waitFor();
  await page.getByLabel("Job kind").selectOption("checksum");
  await page.getByRole("button", { name: "Start Processing" }).click();
  await page.waitForURL(/\/jobs\//);
  const bar = page.getByRole("progressbar");
  await page.waitForFunction(
    () => Number(document.querySelector('[role="progressbar"]')?.getAttribute("aria-valuenow")) >= 40,
  );
  await page.screenshot({ path: `${out}/screenshot${colorScheme === "dark" ? "-dark" : ""}.png` });
  await bar.getAttribute("aria-valuenow");
  await page.close();
}
// The showcase while its job runs, for the README.
const show = await browser.newPage({ viewport: { width: 1100, height: 1000 } });
await show.goto(`${base}/showcase`);
await show.locator('[data-hydrated="true"]').waitFor();
await show.getByRole("button", { name: "Start Processing" }).click();
await show.waitForURL(/showcase\?job=/);
await show.locator('[data-testid="phase-progress"][data-mode="determinate"]').waitFor();
await show.waitForTimeout(900);
await show.screenshot({ path: `${out}/showcase.png`, fullPage: true });
await show.close();
// The dashboard with three jobs of one person: one failed, two running.
const ctx = await browser.newContext({ viewport: { width: 900, height: 1000 } });
const dash = await ctx.newPage();
await dash.goto(`${base}/jobs`);
await dash.locator('[data-hydrated="true"]').waitFor();
for (const kind of ["ticker", "checksum", "failing"]) {
  await dash.getByLabel("Job kind").selectOption(kind);
  await dash.getByRole("button", { name: "Start Processing" }).click();
  await dash.waitForFunction((n) => document.querySelectorAll('[data-testid="job-row"]').length >= n,
    ["ticker", "checksum", "failing"].indexOf(kind) + 1);
}
await dash.getByTestId("job-status").getByText("Failed", { exact: true }).waitFor({ timeout: 30000 });
await dash.screenshot({ path: `${out}/dashboard.png` });
await browser.close();
