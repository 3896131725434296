// The entry of dist/addin/taskpane.js. taskpane.html loads office.js, then functions.js
// (which publishes globalThis.AeroGrid), then this; the pane drives THAT instance, so the
// formulas and the pane share one endpoint and one stream registry.
import { signInWithDialog } from "../taskpane/dialog.js";
import { excelGlobal, officeGlobal, officeRuntimeStorage, type AsyncStorageLike } from "../taskpane/office.js";
import { Pane } from "../taskpane/pane.js";
import { fromWebStorage, settingsStore } from "../taskpane/settings.js";
import { signinPageUrl } from "../taskpane/signin-page.js";
import { domView } from "../taskpane/view.js";
import { aeroGrid } from "./global.js";

function storage(): AsyncStorageLike {
  // OfficeRuntime.storage is shared with the functions' runtime; a plain browser has localStorage.
  return officeRuntimeStorage() ?? fromWebStorage(window.localStorage);
}

async function main(): Promise<void> {
  const office = officeGlobal();
  if (office !== undefined) await office.onReady();
  const api = aeroGrid();
  const message = document.getElementById("message");
  if (api === undefined) {
    if (message !== null) {
      message.textContent = "functions.js did not load: AeroGrid cannot run. Reload the add-in.";
      message.hidden = false;
    }
    return;
  }
  const version = document.getElementById("version");
  if (version !== null) version.textContent = `v${api.version}`;
  let pane: Pane | undefined;
  const view = domView(document, {
    onApply: (settings) => void pane?.apply(settings),
    onSignIn: (settings) => void pane?.signIn(settings),
    onInsert: (app, grid) => void pane?.insert(app, grid),
    onCopy: (app, grid) => void pane?.copy(app, grid),
  });
  pane = new Pane({
    configure: api.configure,
    openStreams: api.openStreams,
    store: settingsStore(storage(), window.location.search),
    view,
    excel: excelGlobal,
    clipboard: () => navigator.clipboard,
    fetch: window.fetch.bind(window),
    signIn:
      office === undefined
        ? undefined
        : (issuer, clientId) =>
            signInWithDialog(office, signinPageUrl(new URL("signin.html", window.location.href).href, issuer, clientId)),
  });
  await pane.start();
}

void main();
