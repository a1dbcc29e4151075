import { expect, test } from "@playwright/test";
import { JobPage } from "../fixtures/job-page";
import { OwnServer } from "../fixtures/server";

// This file kills and restarts a server of its own: its tests run one after another.
test.describe.configure({ mode: "serial" });

test.describe("jobs outlive the server", () => {
  let server: OwnServer;

  test.beforeEach(async () => {
    server = new OwnServer();
    await server.start();
  });

  test.afterEach(async () => {
    await server.dispose();
  });

  test("a resumed job carries on, an interrupted one says so, and reload shows the real state", async ({ page }) => {
    test.setTimeout(90_000);
    const job = new JobPage(page);
    await page.goto(`${server.url}/`);
    await job.waitUntilInteractive();
    const failing = (await (await page.request.post(`${server.url}/api/jobs`, {
      data: { kind: "failing", params: { step_ms: 60000 } },
    })).json()).id as string;
    const ticking = (await (await page.request.post(`${server.url}/api/jobs`, {
      data: { kind: "ticker", params: { steps: 30, interval_ms: 150 } },
    })).json()).id as string;
    await page.goto(`${server.url}/jobs/${ticking}`);
    await job.waitUntilInteractive();
    await expect(job.stepLabel).toHaveText(/Step ([3-9]|\d\d) of 30/);

    await server.kill();
    await expect(job.connection).toContainText("Reconnecting");
    await server.start();

    // The open page reconnects and the job goes on to the end, without a reload.
    await job.waitForStatus("Completed", 60_000);
    await expect(job.result).toContainText('"ticks": 30');

    // A job that could not continue ended visibly; a reload shows it as it is.
    await page.goto(`${server.url}/jobs/${failing}`);
    await job.waitUntilInteractive();
    await expect(job.status).toHaveText("Interrupted");
    const notice = page.getByTestId("job-interrupted");
    await expect(notice).toContainText("The server restarted while this job ran");
    await expect(notice.getByRole("button", { name: "Start it again" })).toBeEnabled();

    // The dashboard still lists both, from before the restart.
    await page.goto(`${server.url}/jobs`);
    await expect(page.locator(`[data-job="${ticking}"]`)).toContainText("Completed");
    await expect(page.locator(`[data-job="${failing}"]`)).toContainText("Interrupted");

    // Starting it again runs a new job of the same kind.
    await page.goto(`${server.url}/jobs/${failing}`);
    await job.waitUntilInteractive();
    await notice.getByRole("button", { name: "Start it again" }).click();
    await page.waitForURL((url) => /\/jobs\/[0-9a-f-]{36}$/.test(url.pathname) && !url.pathname.endsWith(failing));
    await job.waitUntilInteractive();
    await expect(job.status).toHaveText(/Pending|Running/);
  });
});
