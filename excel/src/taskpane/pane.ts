// The task pane's controller: settings in, configure() of the functions' shared instance,
// the catalog watch, status and open-stream count out to the view, and the insert / copy /
// sign-in actions, whose failures end up as text in the pane; a signed-in token is renewed
// with its refresh token while the settings stay as signed in.
import type { AppInfoLike, ListGridsFn, WatchAppsEvent } from "../core/apps.js";
import { watchCatalog, type CatalogWatch } from "./catalog.js";
import { copyFormula, gridFormula, insertFormula, type ClipboardLike, type Outcome } from "./insert.js";
import { discover, TokenRefusedError, type OAuthError, type Token } from "./oauth.js";
import type { ExcelLike } from "./office.js";
import { startRefresher, type Refresher } from "./refresh.js";
import { validateSettings, type Settings, type SettingsErrors, type SettingsStore } from "./settings.js";
import { errorText, INITIAL_STATUS, nextStatus, type PaneStatus } from "./status.js";

/** What the pane needs of the ServiceClients that configure() returns. */
export interface ServiceClientsLike {
  catalog: { watchApps(request: object, options: { signal: AbortSignal }): AsyncIterable<WatchAppsEvent> };
  tenants: Map<string, string>;
  /** The app's grids, asked of the app itself (a cluster's catalog lists none). */
  listGrids?: ListGridsFn;
}

export type Configure = (options: { baseUrl: string; token?: string }) => ServiceClientsLike;

export interface PaneView {
  showSettings(settings: Settings): void;
  showErrors(errors: SettingsErrors): void;
  showStatus(status: PaneStatus): void;
  showStreams(open: number): void;
  showApps(apps: readonly AppInfoLike[]): void;
  showMessage(text: string, kind: "info" | "error"): void;
}

export interface PaneDeps {
  configure: Configure;
  openStreams: () => number;
  store: SettingsStore;
  view: PaneView;
  excel: () => ExcelLike | undefined;
  clipboard: () => ClipboardLike | undefined;
  /** Runs the sign-in dialog; undefined where Office's dialog API is missing. */
  signIn?: ((issuer: string, clientId: string) => Promise<Token>) | undefined;
  /** For the issuer's discovery and token refresh; without it a signed-in token is not renewed. */
  fetch?: typeof globalThis.fetch | undefined;
  /** How often the open-stream count is refreshed (the registry has no events). */
  pollMs?: number;
}

export const EXPIRED_MESSAGE = "Your sign-in has expired: sign in again.";

const sameSettings = (a: Settings, b: Settings | undefined): boolean =>
  b !== undefined && a.endpoint === b.endpoint && a.token === b.token && a.issuer === b.issuer && a.clientId === b.clientId;

function renewalFailure(error: OAuthError): string {
  return error instanceof TokenRefusedError && error.code === "invalid_grant"
    ? EXPIRED_MESSAGE
    : `Your sign-in could not be renewed (${errorText(error)}): sign in again.`;
}

export class Pane {
  private watch: CatalogWatch | undefined;
  private poll: ReturnType<typeof setInterval> | undefined;
  private status: PaneStatus = INITIAL_STATUS;
  /** The settings last handed to configure(). */
  private current: Settings | undefined;
  // The refresh token lives only inside the refresher, in memory: a refresh token in
  // localStorage would be a long-lived credential on disk.
  private refresher: Refresher | undefined;
  /** Bumped by every stop of the renewal, so a sign-in's late discovery starts none. */
  private renewals = 0;

  constructor(private readonly deps: PaneDeps) {}

  async start(): Promise<void> {
    const settings = await this.deps.store.load();
    this.deps.view.showSettings(settings);
    const validated = validateSettings(settings);
    if (validated.ok) {
      this.connect(validated.settings);
    } else {
      this.deps.view.showErrors(validated.errors);
      this.setStatus({ state: "error", error: "the connection settings need fixing" });
    }
    this.poll = setInterval(() => this.deps.view.showStreams(this.deps.openStreams()), this.deps.pollMs ?? 1000);
    this.deps.view.showStreams(this.deps.openStreams());
  }

  stop(): void {
    this.stopRenewal();
    this.watch?.stop();
    this.watch = undefined;
    if (this.poll !== undefined) clearInterval(this.poll);
    this.poll = undefined;
  }

  /** Validates, saves and applies the settings; false (errors shown) when they are invalid. */
  async apply(input: Settings): Promise<boolean> {
    const validated = validateSettings(input);
    if (!validated.ok) {
      this.deps.view.showErrors(validated.errors);
      return false;
    }
    // A change of settings ends the signed-in token's renewal; the same settings again keep it.
    if (!sameSettings(validated.settings, this.current)) this.stopRenewal();
    this.deps.view.showErrors({});
    this.deps.view.showSettings(validated.settings);
    this.connect(validated.settings);
    try {
      await this.deps.store.save(validated.settings);
      this.deps.view.showMessage("Settings applied.", "info");
    } catch (error) {
      this.deps.view.showMessage(`Applied, but could not save the settings: ${errorText(error)}`, "error");
    }
    return true;
  }

  async signIn(input: Settings): Promise<void> {
    const validated = validateSettings(input);
    if (!validated.ok) {
      this.deps.view.showErrors(validated.errors);
      return;
    }
    const { issuer, clientId } = validated.settings;
    if (issuer === "") {
      this.deps.view.showErrors({ issuer: "enter the issuer to sign in with" });
      return;
    }
    if (this.deps.signIn === undefined) {
      this.deps.view.showMessage("Sign-in needs Excel (Office's dialog); paste a token instead.", "error");
      return;
    }
    this.deps.view.showMessage("Signing in…", "info");
    try {
      const token = await this.deps.signIn(issuer, clientId);
      this.stopRenewal(); // the new sign-in replaces the last one (a failed one keeps it)
      if (!(await this.apply({ ...validated.settings, token: token.accessToken }))) return;
      this.deps.view.showMessage("Signed in.", "info");
      await this.renew(issuer, clientId, token);
    } catch (error) {
      this.deps.view.showMessage(`Sign-in failed: ${errorText(error)}`, "error");
    }
  }

  async insert(app: string, grid: string): Promise<Outcome> {
    return this.report(await insertFormula(this.deps.excel(), gridFormula(app, grid)));
  }

  async copy(app: string, grid: string): Promise<Outcome> {
    return this.report(await copyFormula(this.deps.clipboard(), gridFormula(app, grid)));
  }

  /** Starts renewing a signed-in token, when the issuer gave a refresh token and a lifetime. */
  private async renew(issuer: string, clientId: string, token: Token): Promise<void> {
    const { fetch } = this.deps;
    const { refreshToken, expiresIn } = token;
    if (fetch === undefined || refreshToken === undefined || expiresIn === undefined) return;
    const renewals = this.renewals;
    let tokenEndpoint: string;
    try {
      tokenEndpoint = (await discover(issuer, fetch)).tokenEndpoint;
    } catch (error) {
      this.deps.view.showMessage(`Signed in, but the sign-in will not be renewed: ${errorText(error)}`, "error");
      return;
    }
    if (renewals !== this.renewals) return; // the settings changed meanwhile
    this.refresher = startRefresher({
      tokenEndpoint,
      clientId,
      refreshToken,
      expiresIn,
      fetch,
      onToken: (accessToken) => void this.renewed(accessToken),
      onError: (error) => {
        this.refresher = undefined;
        this.deps.view.showMessage(renewalFailure(error), "error");
      },
    });
  }

  /**
   * A renewed token takes the signed-in one's path: configure() (open streams reopen and
   * resume from their last sequence), the form (so a later Apply sends it) and storage;
   * the refresh token is not saved.
   */
  private async renewed(accessToken: string): Promise<void> {
    if (this.current === undefined) return;
    const settings: Settings = { ...this.current, token: accessToken };
    this.deps.view.showSettings(settings);
    this.connect(settings);
    try {
      await this.deps.store.save(settings);
    } catch (error) {
      this.deps.view.showMessage(`Renewed the sign-in, but could not save the token: ${errorText(error)}`, "error");
    }
  }

  private stopRenewal(): void {
    this.renewals += 1;
    this.refresher?.stop();
    this.refresher = undefined;
  }

  private report(outcome: Outcome): Outcome {
    this.deps.view.showMessage(outcome.message, outcome.ok ? "info" : "error");
    return outcome;
  }

  /** Points the functions at the endpoint and restarts the app list's watch on it. */
  private connect(settings: Settings): void {
    this.current = settings;
    this.watch?.stop();
    let clients: ServiceClientsLike;
    try {
      clients = this.deps.configure({ baseUrl: settings.endpoint, token: settings.token });
    } catch (error) {
      this.setStatus({ state: "error", error: errorText(error) });
      return;
    }
    this.setStatus(INITIAL_STATUS);
    this.deps.view.showApps([]);
    this.watch = watchCatalog({
      watch: (signal) => clients.catalog.watchApps({}, { signal }),
      onApps: (apps) => this.deps.view.showApps(apps),
      onApp: (app) => {
        if (app.tenant) clients.tenants.set(app.name, app.tenant);
      },
      onStatus: (status) => this.setStatus(nextStatus(this.status, status)),
      ...(clients.listGrids === undefined ? {} : { listGrids: clients.listGrids }),
    });
  }

  private setStatus(status: PaneStatus): void {
    this.status = status;
    this.deps.view.showStatus(status);
  }
}
