import { expect, test, type Page } from "@playwright/test";
import { countEventSources, DashboardPage } from "../fixtures/dashboard-page";
import { JobPage } from "../fixtures/job-page";

/** Event streams open now in each tab (EventSource objects not closed). */
async function openStreams(tabs: Page[]): Promise<number[]> {
  // No `?? 0`: a tab whose counter was never installed must fail, not read as "no stream".
  return Promise.all(tabs.map((tab) => tab.evaluate(() => window.__eventSources.open)));
}

/** The tab holding the browser's stream, once exactly one tab holds one. */
async function leaderOf(tabs: Page[]): Promise<Page> {
  await expect.poll(async () => (await openStreams(tabs)).reduce((a, b) => a + b, 0)).toBe(1);
  const open = await openStreams(tabs);
  return tabs[open.indexOf(1)];
}

test("ten tabs share one event stream: all load, all show a job live, and the lead moves on without losing or repeating a line", async ({
  context,
}) => {
  test.setTimeout(120_000);
  await context.addInitScript(countEventSources);

  // Ten tabs of one browser all load and hydrate (six streams would exhaust HTTP/1.1's
  // connections per host and stall the seventh).
  const tabs: Page[] = [];
  for (let i = 0; i < 10; i++) {
    const tab = await context.newPage();
    await new DashboardPage(tab).goto();
    tabs.push(tab);
  }

  // A job started in one tab shows live in all ten.
  await new DashboardPage(tabs[6]).startJob("ticker");
  for (const tab of tabs) {
    const row = new DashboardPage(tab).rows.first();
    await expect(row.getByRole("progressbar")).toHaveAttribute("aria-valuenow", "100", { timeout: 30_000 });
    await expect(row.getByTestId("job-status")).toHaveText("Completed");
  }
  const leader = await leaderOf(tabs);
  expect(await openStreams(tabs)).toEqual(tabs.map((t) => (t === leader ? 1 : 0)));

  // A job that logs a line per tick for several seconds, followed in another tab's log.
  const follower = tabs.find((t) => t !== leader)!;
  const job = new JobPage(follower);
  const id = await job.openNewJob("ticker", { steps: 80, interval_ms: 100, log: true });
  const lines = follower.getByTestId("log-console").locator("[data-seq]");
  await expect.poll(() => lines.count()).toBeGreaterThan(10);
  await expect(job.status).toHaveText("Running");

  // The leading tab closes mid-job: another takes the stream over.
  await leader.close();
  const rest = tabs.filter((t) => t !== leader);
  await job.waitForStatus("Completed", 60_000);
  await leaderOf(rest);

  // The follower's log holds every line of the job exactly once, in order.
  const shown = (await lines.evaluateAll((ps) => ps.map((p) => Number(p.getAttribute("data-seq"))))) as number[];
  const response = await follower.request.get(`/api/jobs/${id}/logs`);
  expect(response.status()).toBe(200);
  const all = ((await response.json()).lines as { seq: number }[]).map((l) => l.seq);
  expect(all.length).toBe(80);
  expect(shown.length).toBeGreaterThan(60);
  expect(shown).toEqual(all.filter((seq) => seq >= shown[0]));

  // The tabs that stayed on the dashboard saw the job end too.
  for (const tab of rest.filter((t) => t !== follower)) {
    const row = new DashboardPage(tab).row(id);
    await expect(row.getByTestId("job-status")).toHaveText("Completed");
  }
});
