import { expect, test } from "@playwright/test";
import { startJobViaApi } from "../fixtures/api";
import { JobPage, type Observed } from "../fixtures/job-page";

const nonDecreasing = (values: number[]) => values.every((v, i) => i === 0 || v >= values[i - 1]);

test.describe("a job's live progress", () => {
  test("Start Processing drives the bar through every step to 100 %", async ({ page }) => {
    const job = new JobPage(page);
    await job.recordProgress();
    await job.gotoHome();
    await job.startJob("checksum");

    await expect(job.start).toBeDisabled();
    await job.waitForStatus("Completed");
    await expect(job.bar).toHaveAttribute("aria-valuenow", "100");
    await expect(job.bar).toHaveAttribute("aria-valuetext", "100%, completed");
    await expect(job.result).toContainText('"sha256"');
    await expect(job.result).toContainText('"verified": true');
    await expect(job.start).toBeEnabled();

    const seen = await job.observed();
    const values = seen.map((s) => s.now);
    const intermediate = new Set(values.filter((v) => v > 0 && v < 100));
    expect(intermediate.size, `intermediate values: ${[...intermediate]}`).toBeGreaterThanOrEqual(10);
    expect(nonDecreasing(values), `values went backwards: ${values}`).toBe(true);
    // Each step is named, in order, and none is skipped once the page shows. The page can only
    // show what the job is doing when it arrives: on a busy machine the 300 ms "Preparing" step
    // may be over before the redirect lands, so the first step seen is 1 or 2, never later.
    const names = ["Step 1 of 4: Preparing", "Step 2 of 4: Hashing", "Step 3 of 4: Verifying", "Step 4 of 4: Summarizing"];
    const steps = seen
      .map((s) => s.step)
      .filter((s) => s !== "")
      .filter((s, i, all) => i === 0 || s !== all[i - 1]);
    const first = names.indexOf(steps[0]);
    expect(first, `first step shown: ${steps[0]}`).toBeGreaterThanOrEqual(0);
    expect(first, `first step shown: ${steps[0]}`).toBeLessThanOrEqual(1);
    expect(steps, `steps seen: ${steps}`).toEqual(names.slice(first));
  });

  test("the bar carries the ARIA semantics of a progress bar", async ({ page }) => {
    const job = new JobPage(page);
    await job.gotoHome();
    await job.startJob("ticker");
    await expect(job.bar).toHaveAttribute("aria-valuemin", "0");
    await expect(job.bar).toHaveAttribute("aria-valuemax", "100");
    await expect(job.bar).toHaveAttribute("aria-valuetext", /^\d{1,3}%, step \d+ of 10: Tick \d+$/);
    const now = await job.percent();
    expect(now).toBeGreaterThanOrEqual(0);
    expect(now).toBeLessThanOrEqual(100);
    await expect(job.stepLabel).toHaveAttribute("aria-live", "polite");
    await expect(job.stepLabel).toHaveText(/^Step \d+ of 10: Tick \d+$/);
  });

  test("a failing job shows its error and a way to start again", async ({ page }) => {
    const job = new JobPage(page);
    await job.gotoHome();
    await job.startJob("failing");
    await job.waitForStatus("Failed");
    const alert = page.getByRole("alert").filter({ hasText: "Failed" });
    await expect(alert).toBeVisible();
    await expect(job.error).toHaveText(/^Validating failed at record \d+ of 2400: field "amount" is -12\.50/);
    await expect(job.stepLabel).toHaveText("Step 3 of 4: Validating");
    await expect(job.bar).toHaveAttribute("aria-valuetext", /failed at step 3 of 4: Validating$/);
    const stoppedAt = await job.percent();
    expect(stoppedAt).toBeGreaterThan(50);
    expect(stoppedAt).toBeLessThan(75);
    await expect(job.start).toBeEnabled();
  });

  test("a job that does not know its total yet shows an indeterminate bar, then its value", async ({ page }) => {
    const job = new JobPage(page);
    await job.gotoHome();
    await job.openNewJob("discover", { dir_ms: 500 });
    // No made-up 0 %: no value, a sliding band, and words for screen readers.
    await expect(job.bar).toHaveAttribute("data-mode", "indeterminate");
    await expect(job.bar).not.toHaveAttribute("aria-valuenow", /.*/);
    await expect(job.bar).toHaveAttribute("aria-valuetext", "total not known yet, step 1 of 3: Discovering");
    await expect(job.bar).toHaveAttribute("aria-busy", "true");
    await expect(page.getByTestId("progress-percent")).toHaveText("total not known yet");

    await expect(job.bar).toHaveAttribute("data-mode", "determinate", { timeout: 20_000 });
    await expect(job.bar).toHaveAttribute("aria-valuetext", /^\d{1,3}%, step [23] of 3: /);
    await job.waitForStatus("Completed");
    await expect(job.bar).toHaveAttribute("aria-valuenow", "100");
    await expect(job.bar).not.toHaveAttribute("aria-busy", /.*/);
  });

  test("reloading mid-job renders the current state at once and carries on without going backwards", async ({ page }) => {
    const job = new JobPage(page);
    await job.recordProgress();
    await job.gotoHome();
    await job.startJob("ticker");
    await expect.poll(() => job.percent(), { timeout: 10_000 }).toBeGreaterThanOrEqual(30);
    const before = (await job.observed()).at(-1) as Observed;

    await page.reload();
    const after = await job.observed();
    // The very first state the page shows is the server-rendered snapshot: no flash of 0 %.
    expect(after[0].hydrated, `seen before the app ran: ${JSON.stringify(after[0])}`).toBe(false);
    expect(after[0].now, `first paint after reload: ${JSON.stringify(after[0])}`).toBeGreaterThanOrEqual(before.now);
    expect(after[0].step).toMatch(/^Step \d+ of 10: Tick \d+$/);

    await job.waitUntilInteractive();
    await job.waitForStatus("Completed");
    const values = (await job.observed()).map((s) => s.now);
    expect(nonDecreasing(values), `values went backwards: ${values}`).toBe(true);
    expect(values.at(-1)).toBe(100);
    // Every tick after the reload shows up, in order: the stream resumed without a gap.
    const ticks = (await job.observed())
      .map((s) => Number(/Tick (\d+)$/.exec(s.step)?.[1] ?? 0))
      .filter((t, i, all) => i === 0 || t !== all[i - 1]);
    expect(ticks.length, `the reloaded page saw the job tick: ${ticks}`).toBeGreaterThan(1);
    for (let i = 1; i < ticks.length; i++) expect(ticks[i], `ticks: ${ticks}`).toBe(ticks[i - 1] + 1);
    expect(ticks.at(-1)).toBe(10);
  });
});

test.describe("cancelling", () => {
  test("Cancel in the browser ends the job as cancelled, and every view agrees", async ({ page }) => {
    const job = new JobPage(page);
    await job.gotoHome();
    const id = await job.startJob("ticker");
    await expect(job.stepLabel).toHaveText(/^Step \d+ of 10: Tick \d+$/);
    await job.cancel.click();

    await job.waitForStatus("Cancelled");
    await expect(page.getByRole("status").filter({ hasText: "Cancelled" })).toBeVisible();
    await expect(job.bar).toHaveAttribute("aria-valuetext", /^\d+%, cancelled$/);
    expect(await job.percent()).toBeLessThan(100);
    await expect(job.cancel).toHaveCount(0);
    await expect(job.start).toBeEnabled();

    const state = await (await page.request.get(`/api/jobs/${id}`)).json();
    expect(state.status).toBe("cancelled");
    await page.reload();
    await job.waitForStatus("Cancelled");
  });
});

test.describe("the connection", () => {
  test("a plain EventSource on a job stops once it has the end, instead of replaying the job forever", async ({ page }) => {
    await page.goto("/");
    const id = await startJobViaApi(page, "ticker", { steps: 2, interval_ms: 10 });
    const url = `/api/jobs/${id}/events`;
    const requests: number[] = [];
    page.on("response", (response) => {
      if (new URL(response.url()).pathname === url) requests.push(response.status());
    });
    // After `end` the server closes the stream and the browser reconnects by itself with the
    // last id it saw; that resume point is the terminal event, so the answer is 204 and the
    // EventSource closes for good.
    const seen = await page.evaluate(
      (url) =>
        new Promise<string[]>((resolve) => {
          const source = new EventSource(url);
          const names: string[] = [];
          for (const name of ["pending", "progress", "completed", "end"]) {
            source.addEventListener(name, () => names.push(name));
          }
          const check = setInterval(() => {
            if (source.readyState === EventSource.CLOSED) {
              clearInterval(check);
              resolve(names);
            }
          }, 50);
        }),
      url,
    );
    expect(seen.filter((name) => name === "completed")).toHaveLength(1);
    expect(seen.at(-1)).toBe("end");
    expect(requests).toEqual([200, 204]);
  });

  test("a dropped stream says Reconnecting..., then Connection lost, and Try again carries on", async ({ page }) => {
    const job = new JobPage(page);
    // The server is unreachable for event streams from the start (the app opens its stream
    // as soon as it is interactive).
    await page.route("**/api/events*", (route) => route.fulfill({ status: 503, body: "down" }));
    await job.gotoHome();
    await job.startJob("ticker");
    await expect(job.connection).toHaveText("Reconnecting...");
    await expect(job.status).toHaveText(/Pending|Running/);
    await expect(page.getByRole("alert").filter({ hasText: "Connection lost" })).toBeVisible({ timeout: 45_000 });

    // The server is back: Try again resumes and the job's progress arrives.
    await page.unroute("**/api/events*");
    await page.getByRole("button", { name: "Try again" }).click();
    await job.waitForStatus("Completed");
    await expect(job.bar).toHaveAttribute("aria-valuenow", "100");
    await expect(job.connection).toHaveText("");
  });

  test("a stream that comes back by itself clears Reconnecting... and continues", async ({ page }) => {
    const job = new JobPage(page);
    let refused = 0;
    await page.route("**/api/events*", async (route) => {
      if (refused < 2) {
        refused += 1;
        await route.fulfill({ status: 502, body: "proxy restarting" });
      } else {
        await route.continue();
      }
    });
    await job.openNewJob("ticker", {});
    await expect(job.connection).toHaveText("Reconnecting...");
    await job.waitForStatus("Completed");
    await expect(job.connection).toHaveText("");
    expect(refused).toBe(2);
  });
});

test.describe("pages", () => {
  test("the start form stays in place from home to the job, and on a job's own page repeats its kind", async ({ page }) => {
    const job = new JobPage(page);
    await job.gotoHome();
    // Moving to the job keeps the form as it is: its kinds are not fetched again.
    const refetched: string[] = [];
    page.on("request", (request) => {
      if (request.url().includes("/api/job_kinds")) refetched.push(request.url());
    });
    // A mark on the window: a full page load (which would render the kinds on the server and
    // fetch nothing) would wipe it.
    await page.evaluate(() => ((window as unknown as { sameDocument: boolean }).sameDocument = true));
    await job.startJob("failing");
    await job.waitForStatus("Failed");
    await expect(job.kind).toHaveValue("failing");
    expect(refetched).toEqual([]);
    expect(await page.evaluate(() => (window as unknown as { sameDocument?: boolean }).sameDocument)).toBe(true);

    // Loaded straight from the server, a job's page picks the kind of its job.
    const id = await job.openNewJob("ticker", { steps: 2, interval_ms: 50 });
    await job.waitForStatus("Completed");
    await expect(job.kind).toHaveValue("ticker");
    await expect(job.start).toBeEnabled();
    // Starting again from here repeats it, and the new job's page follows.
    await job.start.click();
    await expect(page).not.toHaveURL(new RegExp(id));
    await expect(page.getByRole("heading", { name: "ticker job" })).toBeVisible();
  });

  test("an unknown job id shows a clear no-such-job page with status 404", async ({ page }) => {
    const response = await page.goto("/jobs/00000000-0000-4000-8000-000000000000");
    expect(response?.status()).toBe(404);
    await expect(page.getByRole("heading", { name: "No such job" })).toBeVisible();
    const garbage = await page.goto("/jobs/not-a-job");
    expect(garbage?.status()).toBe(404);
    await expect(page.getByRole("heading", { name: "No such job" })).toBeVisible();
  });
});

test.describe("on a phone", () => {
  test.use({ viewport: { width: 360, height: 740 }, permissions: ["clipboard-read", "clipboard-write"] });

  test("a finished job's result wraps with no sideways scrolling, and Copy puts it on the clipboard", async ({ page }) => {
    const job = new JobPage(page);
    await job.gotoHome();
    await job.openNewJob("checksum", { size_mib: 2, chunk_delay_ms: 0 });
    await job.waitForStatus("Completed");
    await expect(job.result).toContainText(/"sha256": "[0-9a-f]{64}"/);
    const overflow = await page.evaluate(() => {
      const result = document.querySelector('[data-testid="job-result"]')!;
      return {
        result: result.scrollWidth - result.clientWidth,
        page: document.documentElement.scrollWidth - document.documentElement.clientWidth,
      };
    });
    expect(overflow).toEqual({ result: 0, page: 0 });

    const copy = page.getByTestId("copy-button");
    await expect(copy).toHaveAccessibleName("Copy the result");
    await copy.click();
    await expect(copy).toContainText("Copied");
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    expect(JSON.parse(copied).sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(copied).toBe(await job.result.textContent());
  });
});

test.describe("security", () => {
  test("the app works under its Content-Security-Policy with no violation", async ({ page }) => {
    await page.addInitScript(() => {
      (window as unknown as { __violations: string[] }).__violations = [];
      document.addEventListener("securitypolicyviolation", (e) =>
        (window as unknown as { __violations: string[] }).__violations.push(`${e.violatedDirective} ${e.blockedURI}`),
      );
    });
    const job = new JobPage(page);
    const response = await page.goto("/");
    expect(response?.headers()["content-security-policy"]).toContain("'nonce-");
    await job.waitUntilInteractive();
    await job.startJob("discover");
    await job.waitForStatus("Completed", 30_000);
    await expect(page.getByRole("log", { name: "Job log" })).toContainText("walk finished");
    const violations = await page.evaluate(() => (window as unknown as { __violations: string[] }).__violations);
    expect(violations).toEqual([]);
  });
});
