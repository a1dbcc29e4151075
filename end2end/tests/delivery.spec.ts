import { expect, test } from "@playwright/test";

test("the app's wasm, JS and CSS arrive compressed, and the event stream does not", async ({ page }) => {
  const encodings = new Map<string, string>();
  page.on("response", async (response) => {
    const url = new URL(response.url());
    if (url.pathname.startsWith("/pkg/")) {
      encodings.set(url.pathname.split(".").pop() ?? "", (await response.allHeaders())["content-encoding"] ?? "none");
    }
  });
  await page.goto("/");
  await page.locator('[data-hydrated="true"]').waitFor();
  for (const kind of ["wasm", "js", "css"]) {
    // Chromium asks for brotli over HTTPS only; over plain HTTP it gets gzip.
    expect(["br", "gzip"], `${kind}: ${[...encodings].join(", ")}`).toContain(encodings.get(kind));
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
