// The task pane's DOM: reads the form, shows settings, field errors, status, the open
// stream count, the app list (a button per grid to insert it, one to copy its formula) and
// one message line. The static markup is in pages/taskpane.html; this fills it in.
import { appStatusText, type AppInfoLike } from "../core/apps.js";
import { gridFormula } from "./insert.js";
import type { PaneView } from "./pane.js";
import type { Settings, SettingsErrors } from "./settings.js";
import { statusText, streamsText, type PaneStatus } from "./status.js";

export interface ViewHandlers {
  onApply(settings: Settings): void;
  onSignIn(settings: Settings): void;
  onInsert(app: string, grid: string): void;
  onCopy(app: string, grid: string): void;
}

const FIELDS = ["endpoint", "token", "issuer", "clientId"] as const;

function byId<T extends HTMLElement>(document: Document, id: string): T {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`taskpane.html has no #${id}`);
  return element as T;
}

export function domView(document: Document, handlers: ViewHandlers): PaneView {
  const form = byId<HTMLFormElement>(document, "settings");
  const inputs = Object.fromEntries(FIELDS.map((f) => [f, byId<HTMLInputElement>(document, f)])) as Record<
    (typeof FIELDS)[number],
    HTMLInputElement
  >;
  const status = byId(document, "status");
  const streams = byId(document, "streams");
  const list = byId<HTMLUListElement>(document, "apps");
  const empty = byId(document, "apps-empty");
  const message = byId(document, "message");
  let rendered = "";

  const read = (): Settings => ({
    endpoint: inputs.endpoint.value,
    token: inputs.token.value,
    issuer: inputs.issuer.value,
    clientId: inputs.clientId.value,
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    handlers.onApply(read());
  });
  byId(document, "signin").addEventListener("click", () => handlers.onSignIn(read()));

  const button = (text: string, label: string, className: string, onClick: () => void): HTMLButtonElement => {
    const element = document.createElement("button");
    element.type = "button";
    element.className = className;
    element.textContent = text;
    element.setAttribute("aria-label", label);
    element.title = label;
    element.addEventListener("click", onClick);
    return element;
  };

  const appItem = (app: AppInfoLike): HTMLLIElement => {
    const item = document.createElement("li");
    item.className = "app";
    const head = document.createElement("div");
    head.className = "app-head";
    const name = document.createElement("span");
    name.className = "app-name";
    name.textContent = app.name;
    const state = document.createElement("span");
    state.className = "app-status";
    state.dataset.status = String(app.status);
    state.textContent = appStatusText(app);
    head.append(name, state);
    item.append(head);
    if (app.tenant) {
      const tenant = document.createElement("div");
      tenant.className = "app-tenant";
      tenant.textContent = `tenant ${app.tenant}`;
      item.append(tenant);
    }
    const grids = document.createElement("ul");
    grids.className = "grids";
    grids.setAttribute("aria-label", `Grids of ${app.name}`);
    for (const { name: grid } of app.grids) {
      const formula = gridFormula(app.name, grid);
      const row = document.createElement("li");
      row.append(
        button(grid, `Insert ${formula} at the selected cell`, "grid", () => handlers.onInsert(app.name, grid)),
        button("Copy", `Copy ${formula}`, "copy", () => handlers.onCopy(app.name, grid)),
      );
      grids.append(row);
    }
    if (app.grids.length === 0) {
      const none = document.createElement("li");
      none.className = "muted";
      none.textContent = "no grids";
      grids.append(none);
    }
    item.append(grids);
    return item;
  };

  return {
    showSettings(settings) {
      for (const field of FIELDS) inputs[field].value = settings[field];
    },
    showErrors(errors: SettingsErrors) {
      for (const field of FIELDS) {
        const text = errors[field] ?? "";
        byId(document, `${field}-error`).textContent = text;
        inputs[field].setAttribute("aria-invalid", text === "" ? "false" : "true");
      }
    },
    showStatus(value: PaneStatus) {
      status.textContent = statusText(value);
      status.dataset.state = value.state;
    },
    showStreams(open) {
      const text = streamsText(open);
      if (streams.textContent !== text) streams.textContent = text;
    },
    showApps(apps) {
      // Re-render only on a change, so a focused button is not replaced under the user.
      const key = JSON.stringify(apps.map((a) => [a.name, a.tenant, appStatusText(a), a.grids.map((g) => g.name)]));
      if (key === rendered) return;
      rendered = key;
      list.replaceChildren(...apps.map(appItem));
      empty.hidden = apps.length > 0;
    },
    showMessage(text, kind) {
      message.textContent = text;
      message.dataset.kind = kind;
      message.hidden = text === "";
    },
  };
}
