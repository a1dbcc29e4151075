import { expect, test } from "@playwright/test";

test("the app's wasm, JS and CSS arrive compressed and content-named for a year's caching, the page revalidated, and the event stream not compressed", async ({ page }) => {
  const assets = new Map<string, { path: string; encoding: string; cache: string }>();
  page.on("response", async (response) => {
    const url = new URL(response.url());
    if (url.pathname.startsWith("/pkg/sse-progress.")) {
      const headers = await response.allHeaders();
      assets.set(url.pathname.split(".").pop() ?? "", {
        path: url.pathname,
        encoding: headers["content-encoding"] ?? "none",
        cache: headers["cache-control"] ?? "none",
      });
    }
  });
  const html = await page.goto("/");
  expect(html?.headers()["cache-control"]).toBe("no-cache");
  await page.locator('[data-hydrated="true"]').waitFor();
  for (const kind of ["wasm", "js", "css"]) {
    const asset = assets.get(kind);
    const seen = JSON.stringify([...assets]);
    // Chromium asks for brotli over HTTPS only; over plain HTTP it gets gzip.
    expect(["br", "gzip"], `${kind}: ${seen}`).toContain(asset?.encoding);
    expect(asset?.path, `${kind} is named after its content`).toMatch(new RegExp(`^/pkg/sse-progress\\.[A-Za-z0-9_-]{8,}\\.${kind}$`));
    expect(asset?.cache, seen).toBe("public, max-age=31536000, immutable");
  }
  const stream = await page.evaluate(async () => {
    const controller = new AbortController();
    const response = await fetch("/api/events", { signal: controller.signal });
    const headers = { type: response.headers.get("content-type"), encoding: response.headers.get("content-encoding") };
    controller.abort();
    return headers;
  });
  expect(stream.type).toContain("text/event-stream");
  expect(stream.encoding, "a stream must never wait in an encoder").toBeNull();
});

test("a page behind a lazy route fetches its own code, content-named and compressed, when first opened", async ({ page }) => {
  const chunks: { path: string; encoding: string; cache: string }[] = [];
  // Requests are noted at once (the response handler below awaits, and may note late).
  const requested: string[] = [];
  page.on("request", (request) => requested.push(new URL(request.url()).pathname));
  page.on("response", async (response) => {
    const url = new URL(response.url());
    if (url.pathname.startsWith("/pkg/") && url.pathname.endsWith(".wasm") && !url.pathname.startsWith("/pkg/sse-progress.")) {
      const headers = await response.allHeaders();
      chunks.push({ path: url.pathname, encoding: headers["content-encoding"] ?? "none", cache: headers["cache-control"] ?? "none" });
    }
  });
  await page.goto("/");
  await page.locator('[data-hydrated="true"]').waitFor();
  const early = requested.filter((p) => p.includes("dashboard") && p.endsWith(".wasm"));
  expect(early, "the home page does not fetch the dashboard's code").toEqual([]);
  await page.getByRole("link", { name: "My jobs" }).click();
  await expect(page.getByRole("heading", { name: "My jobs" })).toBeVisible();
  const dashboard = chunks.find((c) => c.path.includes("dashboard"));
  expect(dashboard, JSON.stringify(chunks)).toBeDefined();
  expect(["br", "gzip"]).toContain(dashboard?.encoding);
  expect(dashboard?.cache).toBe("public, max-age=31536000, immutable");
});
