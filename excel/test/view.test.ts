// @vitest-environment happy-dom
// The task pane's DOM over the real pages/taskpane.html markup (scripts left out).
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { AppInfoLike } from "../src/core/apps.js";
import type { PaneView } from "../src/taskpane/pane.js";
import { domView, type ViewHandlers } from "../src/taskpane/view.js";
import MARKUP from "../pages/taskpane.html?raw";

const app = (name: string, grids: string[], tenant = "", status = 3, message = ""): AppInfoLike => ({
  name,
  tenant,
  status,
  grids: grids.map((g) => ({ name: g })),
  message,
});

const byId = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;

describe("domView", () => {
  let view: PaneView;
  let handlers: { [K in keyof ViewHandlers]: ReturnType<typeof vi.fn> };

  beforeEach(() => {
    const body = /<body>([\s\S]*)<\/body>/.exec(MARKUP)?.[1] ?? "";
    document.body.innerHTML = body.replace(/<script[\s\S]*?<\/script>/g, "");
    handlers = { onApply: vi.fn(), onSignIn: vi.fn(), onInsert: vi.fn(), onCopy: vi.fn() };
    view = domView(document, handlers as unknown as ViewHandlers);
  });

  it("shows the settings and hands the form's values to Apply and Sign in", () => {
    view.showSettings({ endpoint: "http://localhost:50051", token: "t", issuer: "", clientId: "" });
    expect(byId<HTMLInputElement>("endpoint").value).toBe("http://localhost:50051");
    byId<HTMLInputElement>("issuer").value = "https://idp.example.com";
    byId<HTMLInputElement>("clientId").value = "excel";
    byId<HTMLFormElement>("settings").dispatchEvent(new Event("submit", { cancelable: true }));
    const expected = { endpoint: "http://localhost:50051", token: "t", issuer: "https://idp.example.com", clientId: "excel" };
    expect(handlers.onApply).toHaveBeenCalledWith(expected);
    byId("signin").click();
    expect(handlers.onSignIn).toHaveBeenCalledWith(expected);
  });

  it("marks bad fields with their message, and clears them", () => {
    view.showErrors({ endpoint: "not a URL" });
    expect(byId("endpoint-error").textContent).toBe("not a URL");
    expect(byId("endpoint").getAttribute("aria-invalid")).toBe("true");
    expect(byId("token").getAttribute("aria-invalid")).toBe("false");
    view.showErrors({});
    expect(byId("endpoint-error").textContent).toBe("");
  });

  it("shows the status in the live region, and the open stream count", () => {
    view.showStatus({ state: "reconnecting", error: "the endpoint is unreachable" });
    const status = byId("status");
    expect(status.getAttribute("aria-live")).toBe("polite");
    expect(status.textContent).toBe("Reconnecting: the endpoint is unreachable");
    expect(status.dataset.state).toBe("reconnecting");
    view.showStreams(2);
    expect(byId("streams").textContent).toBe("2 open streams");
  });

  it("lists the apps with a button per grid that inserts, and one that copies", () => {
    expect(byId("apps-empty").hidden).toBe(false);
    view.showApps([app("orders", ["product_sum", "by_hour"], "acme"), app("broken", [], "", 5, "crashed")]);
    expect(byId("apps-empty").hidden).toBe(true);
    const items = [...document.querySelectorAll<HTMLLIElement>("#apps > li")];
    expect(items.map((i) => i.querySelector(".app-name")?.textContent)).toEqual(["orders", "broken"]);
    expect(items[0]?.querySelector(".app-tenant")?.textContent).toBe("tenant acme");
    expect(items[1]?.querySelector(".app-status")?.textContent).toBe("failed: crashed");
    expect(items[1]?.querySelector(".grids")?.textContent).toBe("no grids");

    const grid = items[0]?.querySelector<HTMLButtonElement>("button.grid");
    expect(grid?.textContent).toBe("product_sum");
    expect(grid?.getAttribute("aria-label")).toBe('Insert =AEROGRID.GRID("orders","product_sum") at the selected cell');
    grid?.click();
    expect(handlers.onInsert).toHaveBeenCalledWith("orders", "product_sum");
    items[0]?.querySelectorAll<HTMLButtonElement>("button.copy")[1]?.click();
    expect(handlers.onCopy).toHaveBeenCalledWith("orders", "by_hour");
  });

  it("keeps the list's elements when nothing changed (focus stays put)", () => {
    view.showApps([app("orders", ["product_sum"])]);
    const before = document.querySelector("button.grid");
    view.showApps([app("orders", ["product_sum"])]);
    expect(document.querySelector("button.grid")).toBe(before);
    view.showApps([app("orders", ["product_sum", "new_grid"])]);
    expect(document.querySelectorAll("button.grid")).toHaveLength(2);
  });

  it("shows one message line, hidden when empty", () => {
    const message = byId("message");
    expect(message.hidden).toBe(true);
    view.showMessage("Could not insert the formula: busy", "error");
    expect(message.hidden).toBe(false);
    expect(message.textContent).toBe("Could not insert the formula: busy");
    expect(message.dataset.kind).toBe("error");
    view.showMessage("", "info");
    expect(message.hidden).toBe(true);
  });
});
