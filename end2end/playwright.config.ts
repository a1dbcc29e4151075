import { defineConfig, devices } from "@playwright/test";

// `cargo leptos end-to-end` starts the server on LEPTOS_SITE_ADDR (127.0.0.1:3000 by default)
// before running these tests; BASE_URL points them elsewhere.
const baseURL = process.env.BASE_URL ?? `http://${process.env.LEPTOS_SITE_ADDR ?? "127.0.0.1:3000"}`;

export default defineConfig({
  testDir: "./tests",
  timeout: 60_000,
  expect: { timeout: 15_000 },
  fullyParallel: true,
  workers: 2,
  forbidOnly: !!process.env.CI,
  retries: 0,
  reporter: [["list"]],
  use: {
    baseURL,
    trace: "retain-on-failure",
    screenshot: "only-on-failure",
  },
  projects: [
    {
      name: "chromium",
      use: {
        ...devices["Desktop Chrome"],
        launchOptions: {
          // Debian's Chromium: Playwright must never download a browser of its own here.
          executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
          args: [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
          ],
        },
      },
    },
  ],
});
