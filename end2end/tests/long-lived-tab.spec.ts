import { expect, test } from "@playwright/test";
import { startJobViaApi } from "../fixtures/api";
import { countEventSources, DashboardPage } from "../fixtures/dashboard-page";
import { OwnServer } from "../fixtures/server";

const JOBS = 500;
/** Jobs one owner may have pending or running at once (the server's default). */
const WAVE = 16;

test("a dashboard that saw 500 jobs start and end reconnects after a server restart and shows the next job live", async ({
  browser,
}) => {
  test.setTimeout(240_000);
  const server = new OwnServer();
  await server.start();
  const context = await browser.newContext({ baseURL: server.url });
  try {
    await context.addInitScript(countEventSources);
    const page = await context.newPage();
    const streams: number[] = [];
    page.on("response", (response) => {
      if (new URL(response.url()).pathname === "/api/events") streams.push(response.status());
    });
    const dashboard = new DashboardPage(page);
    await dashboard.goto();

    // Short jobs, started as this tab's owner, in waves the per-owner limit allows; the tab
    // sees each wave end before the next starts.
    const completed = dashboard.rows.getByTestId("job-status").filter({ hasText: "Completed" });
    for (let started = 0; started < JOBS; started += WAVE) {
      const wave = Math.min(WAVE, JOBS - started);
      await Promise.all(Array.from({ length: wave }, () => startJobViaApi(page, "ticker", { steps: 1, interval_ms: 0 })));
      await expect(completed).toHaveCount(started + wave, { timeout: 30_000 });
    }
    await expect(dashboard.rows).toHaveCount(JOBS);

    // The server restarts under the tab: its stream drops and comes back by itself. Resuming
    // every job it ever saw would make a query past the server's 16 KiB head limit (431), and
    // the stream would end as "Connection lost".
    const before = streams.length;
    await server.kill();
    await server.start();
    await expect.poll(() => streams.slice(before), { timeout: 30_000 }).toContain(200);
    expect(streams, `answers to /api/events: ${streams}`).not.toContain(431);
    const urls = await page.evaluate(() => window.__eventSources.urls);
    expect(urls.length, urls.join("\n")).toBeGreaterThan(1);
    expect(urls.at(-1)!.length, urls.at(-1)).toBeLessThan(4096);

    // A job started now shows up on the dashboard and moves, live, over the resumed stream.
    const id = await startJobViaApi(page, "ticker", { steps: 10, interval_ms: 500 });
    const row = dashboard.row(id);
    await expect(row.getByTestId("job-status")).toHaveText("Running");
    await expect(row).toContainText(/Step \d+ of 10: Tick \d+/);
    await expect(row.getByRole("progressbar")).toHaveAttribute("aria-valuenow", "100", { timeout: 30_000 });
    await expect(row.getByTestId("job-status")).toHaveText("Completed");
    await expect(dashboard.rows).toHaveCount(JOBS + 1);
  } finally {
    await context.close();
    await server.dispose();
  }
});
