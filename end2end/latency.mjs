// How quick the app feels, measured in headless Chromium as a person uses it:
// - load: from navigating to `/` until Start Processing is enabled (the page is interactive);
// - click: from the click on Start Processing until the new job's page paints a progress above 0.
// Prints the median and p95 of RUNS runs (default 20) against BASE_URL (default
// http://127.0.0.1:3000), each in a fresh tab of one browser, so the page's files are cached as
// for a returning person. Each run cancels its job and waits for it to end before the next, so
// the jobs of earlier runs (a checksum job keeps a core busy for seconds) do not slow the next
// one down. Run it against a release build: `node end2end/latency.mjs`.
import { chromium } from "@playwright/test";

const base = process.env.BASE_URL ?? "http://127.0.0.1:3000";
const runs = Number(process.env.RUNS ?? 20);
const kind = process.env.KIND ?? "checksum";

/** Installed before any page script: stamps the moments that matter, on an absolute clock that
 *  survives a full page load (sessionStorage lives as long as the tab). */
function stamp() {
  const now = () => performance.timeOrigin + performance.now();
  document.addEventListener(
    "click",
    (e) => {
      if (e.target instanceof Element && e.target.closest('button[type="submit"]')) {
        sessionStorage.setItem("clickAt", String(now()));
      }
    },
    true,
  );
  const check = () => {
    if (!sessionStorage.getItem("readyAt") && document.querySelector('[data-hydrated="true"]')) {
      sessionStorage.setItem("readyAt", String(performance.now()));
    }
    const bar = document.querySelector('[role="progressbar"][aria-label="Job progress"]');
    if (sessionStorage.getItem("clickAt") && !sessionStorage.getItem("pageAt") && location.pathname.startsWith("/jobs/") && bar) {
      sessionStorage.setItem("pageAt", String(now()));
    }
    if (
      sessionStorage.getItem("clickAt") &&
      !sessionStorage.getItem("paintAt") &&
      location.pathname.startsWith("/jobs/") &&
      bar &&
      Number(bar.getAttribute("aria-valuenow")) > 0
    ) {
      // The frame after the change is the one that shows it.
      requestAnimationFrame(() => sessionStorage.setItem("paintAt", String(now())));
      sessionStorage.setItem("paintAt", "pending");
    }
  };
  new MutationObserver(check).observe(document, { subtree: true, childList: true, attributes: true });
}

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
const summary = (name, values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return `${name}: median ${quantile(sorted, 0.5).toFixed(0)} ms, p95 ${quantile(sorted, 0.95).toFixed(0)} ms, min ${sorted[0].toFixed(0)} ms, max ${sorted[sorted.length - 1].toFixed(0)} ms`;
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const context = await browser.newContext({ baseURL: base });
await context.addInitScript(stamp);
const loads = [];
const pages = [];
const clicks = [];
// One warm-up run, not counted: the first visit fills the cache.
for (let i = 0; i <= runs; i++) {
  const page = await context.newPage();
  await page.goto("/");
  const start = page.getByRole("button", { name: "Start Processing" });
  await start.waitFor();
  await page.waitForFunction(() => sessionStorage.getItem("readyAt"));
  await page.getByLabel("Job kind").selectOption(kind);
  await start.click();
  await page.waitForFunction(() => Number(sessionStorage.getItem("paintAt")) > 0, null, { timeout: 30_000 });
  const [readyAt, clickAt, pageAt, paintAt] = await page.evaluate(() =>
    ["readyAt", "clickAt", "pageAt", "paintAt"].map((k) => Number(sessionStorage.getItem(k))),
  );
  const job = new URL(page.url()).pathname.split("/").pop();
  await page.request.delete(`/api/jobs/${job}`);
  for (const deadline = Date.now() + 30_000; ; ) {
    const { status } = await (await page.request.get(`/api/jobs/${job}`)).json();
    if (["completed", "failed", "cancelled", "interrupted"].includes(status)) break;
    if (Date.now() > deadline) throw new Error(`job ${job} still ${status} 30 s after it was cancelled`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  if (i > 0) {
    loads.push(readyAt);
    pages.push(pageAt - clickAt);
    clicks.push(paintAt - clickAt);
  }
  await page.close();
}
await browser.close();
console.log(`${runs} runs against ${base} (kind ${kind})`);
console.log(summary("load to interactive", loads));
console.log(summary("click to the job's page", pages));
console.log(summary("click to first progress painted", clicks));
