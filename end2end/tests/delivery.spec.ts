import { expect, test } from "@playwright/test";

test("the app's wasm, JS and CSS arrive compressed and content-named for a year's caching, the page revalidated, and the event stream not compressed", async ({ page }) => {
  const assets = new Map<string, { path: string; encoding: string; cache: string }>();
  page.on("response", async (response) => {
    const url = new URL(response.url());
    if (url.pathname.startsWith("/pkg/")) {
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
