import { expect, test } from "@playwright/test";
import { countEventSources, DashboardPage } from "../fixtures/dashboard-page";
import { JobPage } from "../fixtures/job-page";
import { startJobViaApi } from "../fixtures/api";

test("eight jobs from one tab all reach 100 % over a single event-stream connection", async ({ page }) => {
  await page.addInitScript(countEventSources);
  const dashboard = new DashboardPage(page);
  await dashboard.goto();
  for (let i = 0; i < 8; i++) {
    await dashboard.startJob("ticker");
  }
  const bars = dashboard.rows.getByRole("progressbar", { name: "Job progress" });
  await expect(bars).toHaveCount(8);
  for (let i = 0; i < 8; i++) {
    await expect(bars.nth(i)).toHaveAttribute("aria-valuenow", "100", { timeout: 30_000 });
  }
  await expect(dashboard.rows.getByTestId("job-status").filter({ hasText: "Completed" })).toHaveCount(8);
  const counts = await page.evaluate(() => window.__eventSources);
  expect(counts.maxOpen, `event streams: ${counts.urls.join(", ")}`).toBe(1);
  expect(counts.urls.every((u) => u.startsWith("/api/events")), counts.urls.join(", ")).toBe(true);
});

test("a second browser context sees none of the first one's jobs", async ({ page, browser }) => {
  const job = new JobPage(page);
  await job.gotoHome();
  const id = await job.startJob("ticker");

  const stranger = await browser.newContext();
  const theirs = await stranger.newPage();
  const response = await theirs.goto(`/jobs/${id}`);
  expect(response?.status()).toBe(404);
  await expect(theirs.getByRole("heading", { name: "No such job" })).toBeVisible();
  const dashboard = new DashboardPage(theirs);
  await dashboard.goto();
  await expect(dashboard.empty).toBeVisible();
  const api = await theirs.request.get(`/api/jobs/${id}`);
  expect(api.status()).toBe(404);
  await stranger.close();
});

test("a job started in tab A appears live in tab B's dashboard", async ({ page, context }) => {
  const tabB = new DashboardPage(page);
  await tabB.goto();
  const before = await tabB.rows.count();

  const tabA = new JobPage(await context.newPage());
  await tabA.gotoHome();
  const id = await tabA.startJob("ticker");

  await expect(tabB.rows).toHaveCount(before + 1);
  const row = tabB.row(id);
  await expect(row).toBeVisible();
  await expect(row.getByRole("progressbar")).toHaveAttribute("aria-valuenow", "100", { timeout: 20_000 });
  await expect(row.getByTestId("job-status")).toHaveText("Completed");
});

test("Cancel on the dashboard ends that job as cancelled", async ({ page }) => {
  const dashboard = new DashboardPage(page);
  await dashboard.goto();
  await dashboard.startJob("ticker");
  const row = dashboard.rows.first();
  await expect(row.getByTestId("job-status")).toHaveText("Running");
  await row.getByRole("button", { name: "Cancel", exact: true }).click();
  await expect(row.getByTestId("job-status")).toHaveText("Cancelled");
});

test("a failed job's row says why it failed", async ({ page }) => {
  const dashboard = new DashboardPage(page);
  await dashboard.goto();
  await dashboard.startJob("failing");
  const row = dashboard.rows.first();
  await expect(row.getByTestId("job-status")).toHaveText("Failed", { timeout: 20_000 });
  await expect(row.getByTestId("job-detail")).toContainText(/^Validating failed at record \d+ of 2400: field "amount" is -12\.50/);
});

test("the header counts the jobs not finished yet, live, on every page", async ({ page }) => {
  const job = new JobPage(page);
  await job.gotoHome();
  const count = page.getByTestId("unfinished-count");
  await expect(count).toHaveCount(0);
  await startJobViaApi(page, "ticker", { steps: 6, interval_ms: 300 });
  await startJobViaApi(page, "ticker", { steps: 6, interval_ms: 300 });
  await expect(count).toHaveText("2 not finished");
  await expect(page.getByRole("link", { name: "My jobs 2 not finished" })).toBeVisible();
  await expect(count).toHaveCount(0, { timeout: 20_000 });
});
