import { expect, test } from "@playwright/test";
import { JobPage } from "../fixtures/job-page";
import { ShowcasePage } from "../fixtures/showcase-page";

test("the log console fills with the job's own lines while it runs", async ({ page }) => {
  const job = new JobPage(page);
  await job.gotoHome();
  await job.startJob("checksum");
  const consoleLog = page.getByRole("log", { name: "Job log" });
  await expect(consoleLog).toContainText("first pass started");
  await expect(job.status).toHaveText("Running");
  await expect(consoleLog).toContainText("chunk hashed on the blocking pool");
  await expect(consoleLog.locator('[data-level="info"]').first()).toContainText(/^\d\d:\d\d:\d\d\.\d{3} info /);
  await job.waitForStatus("Completed");
  await expect(consoleLog).toContainText("verified: both passes agree");
  const lines = await consoleLog.locator("[data-level]").count();
  expect(lines).toBeGreaterThanOrEqual(8);

  // A reload renders the lines the job already wrote.
  await page.reload();
  await expect(page.getByRole("log", { name: "Job log" }).locator("[data-level]")).toHaveCount(lines);
});

test("the log console follows new lines, stays put when the person scrolls up, and jumps back on request", async ({ page }) => {
  const job = new JobPage(page);
  await job.gotoHome();
  // About 65 directory listings, one log line each, 150 ms apart: lines keep arriving while the
  // person scrolls, which is when following must not undo their scroll.
  await job.openNewJob("discover", { files: 400, dir_ms: 150, file_ms: 5 });
  const log = page.getByRole("log", { name: "Job log" });
  const lines = () => log.locator("[data-level]").count();
  const fromBottom = () => log.evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight);
  const scrollTop = () => log.evaluate((el) => el.scrollTop);

  // More lines than fit: the console keeps the newest in view as they arrive.
  await expect.poll(() => log.evaluate((el) => el.scrollHeight - el.clientHeight), { timeout: 20_000 }).toBeGreaterThan(60);
  const before = await lines();
  await expect.poll(lines).toBeGreaterThan(before);
  await expect.poll(fromBottom).toBeLessThanOrEqual(24);

  // The person scrolls up to read: new lines keep arriving, the view stays where they put it.
  await log.hover();
  await page.mouse.wheel(0, -5000);
  await expect.poll(scrollTop).toBe(0);
  const whileReading = await lines();
  await expect.poll(lines).toBeGreaterThanOrEqual(whileReading + 2);
  expect(await scrollTop()).toBe(0);
  const jump = page.getByRole("button", { name: /^Jump to the newest line \(\d+ new lines?\)$/ });
  await expect(jump).toBeVisible();

  // Jumping back follows again.
  await jump.click();
  await expect.poll(fromBottom).toBeLessThanOrEqual(24);
  await expect(jump).toHaveCount(0);
  const followed = await lines();
  await expect.poll(lines).toBeGreaterThan(followed);
  await expect.poll(fromBottom).toBeLessThanOrEqual(24);
});

test("Start Processing on the showcase follows the new job until every component shows it completed", async ({ page }) => {
  const show = new ShowcasePage(page);
  await show.goto();
  await show.startJob();

  await expect(show.bar).toHaveAttribute("aria-valuenow", "100", { timeout: 30_000 });
  await expect(show.stepper.locator("li")).toHaveCount(3);
  await expect(show.stepper.locator('li[data-state="done"]')).toHaveCount(3);
  await expect(show.ring).toHaveAttribute("aria-valuenow", "100");
  await expect(show.phase).toHaveAttribute("data-mode", "determinate");
  await expect(show.phase).toHaveAttribute("aria-valuenow", "100");
  await expect(show.log).toContainText("walk finished: the total is known");
  await expect(show.eta).toHaveText(/^Finished in \d+\.\d s$/);
});

test("work of unknown length is indeterminate until its total is known, then shows a rate and an ETA", async ({ page }) => {
  const show = new ShowcasePage(page);
  await show.goto();
  await show.followSlowDiscovery();

  // The total is unknown at first: indeterminate bar and ring, no value, no ETA.
  await expect(show.phase).toHaveAttribute("data-mode", "indeterminate");
  await expect(show.phase).not.toHaveAttribute("aria-valuenow", /.*/);
  await expect(show.ring).not.toHaveAttribute("aria-valuenow", /.*/);
  await expect(show.eta).toHaveText("Estimating: the total is not known yet");
  await expect(show.stepper.locator('li[aria-current="step"]')).toContainText("Discovering");

  // Then it is known: determinate, with a rate and an ETA.
  await expect(show.phase).toHaveAttribute("data-mode", "determinate", { timeout: 30_000 });
  await expect(show.stepper.locator('li[data-state="done"]').first()).toContainText("Discovering");
  await expect(show.eta).toHaveText(/^about \d+ (s|min) left, [\d.]+ (MB|kB|B)\/s$/, { timeout: 10_000 });

  // And all of them end completed.
  await expect(show.bar).toHaveAttribute("aria-valuenow", "100", { timeout: 30_000 });
  await expect(show.stepper.locator('li[data-state="done"]')).toHaveCount(3);
  await expect(show.ring).toHaveAttribute("aria-valuenow", "100");
  await expect(show.phase).toHaveAttribute("aria-valuenow", "100");
  await expect(show.eta).toHaveText(/^Finished in \d+\.\d s$/);
});

test("the indeterminate band stands still for people who prefer reduced motion", async ({ page }) => {
  await page.emulateMedia({ reducedMotion: "no-preference" });
  const show = new ShowcasePage(page);
  await show.goto();
  await show.followSlowDiscovery();
  const band = show.phase.locator(".sse-indeterminate");
  const ring = show.ring.locator("svg");
  const animation = (el: Element) => getComputedStyle(el).animationName;
  await expect(band).toBeVisible();
  // Both move for everyone else, so that "none" below is the preference's doing.
  expect(await band.evaluate(animation)).toBe("sse-slide");
  expect(await ring.evaluate(animation)).toBe("spin");

  await page.emulateMedia({ reducedMotion: "reduce" });
  await expect(band).toBeVisible();
  await expect.poll(() => band.evaluate(animation)).toBe("none");
  await expect.poll(() => ring.evaluate(animation)).toBe("none");
});
