// The network layer: connect-web clients for GridService and CatalogService at ONE base
// URL (the local endpoint or the cloud one), with an optional bearer token. Works in
// Excel's runtimes (browser fetch) and in Node 20+ (global fetch), so the live tests run
// the same code as the add-in.
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import type { SubscribeArgs, SubscribeEvent, SubscribeFn } from "./core/feed.js";
import { normalizeBaseUrl } from "./core/url.js";
import { CatalogService } from "./gen/aerogrid/v1/catalog_pb.js";
import { GridService } from "./gen/aerogrid/v1/grid_pb.js";

export { normalizeBaseUrl };

/**
 * How a cluster's gateway routes a grid call (it cannot read the request body). A copy of
 * the runtime's aerogrid.routing names; test_client_routing_headers.py keeps them equal.
 */
export const APP_HEADER = "x-aerogrid-app";
export const TENANT_HEADER = "x-aerogrid-tenant";

/** Where and how to reach the services: the endpoint URL, credentials, wire format. */
export interface ServiceClientsOptions {
  /** e.g. "http://localhost:50051" or the cloud URL; a trailing slash is ignored. */
  baseUrl: string;
  /** Bearer token; empty or undefined sends no Authorization header. */
  token?: string | undefined;
  /** The tenant of an app when known (e.g. from the catalog); sent as x-aerogrid-tenant. */
  tenantOf?: ((app: string) => string | undefined) | undefined;
  /** Binary protobuf (default) or JSON on the wire. */
  useBinaryFormat?: boolean;
  /** For tests: a fetch to use instead of the global one. */
  fetch?: typeof globalThis.fetch;
}

/** The add-in's connect-web clients of GridService and CatalogService at one endpoint URL. */
export class ServiceClients {
  readonly baseUrl: string;
  readonly transport: Transport;
  readonly grids: Client<typeof GridService>;
  readonly catalog: Client<typeof CatalogService>;
  /** Tenants learned from the catalog (app name to tenant). */
  readonly tenants = new Map<string, string>();

  constructor(private readonly options: ServiceClientsOptions) {
    this.baseUrl = normalizeBaseUrl(options.baseUrl);
    const token = options.token?.trim() ?? "";
    const interceptors: Interceptor[] = [];
    if (token !== "") {
      interceptors.push((next) => (req) => {
        req.header.set("authorization", `Bearer ${token}`);
        return next(req);
      });
    }
    this.transport = createConnectTransport({
      baseUrl: this.baseUrl,
      useBinaryFormat: options.useBinaryFormat ?? true,
      interceptors,
      ...(options.fetch === undefined ? {} : { fetch: options.fetch }),
    });
    this.grids = createClient(GridService, this.transport);
    this.catalog = createClient(CatalogService, this.transport);
  }

  /** The routing headers of a grid call for `app`. */
  gridHeaders(app: string): Record<string, string> {
    const headers: Record<string, string> = { [APP_HEADER]: app };
    const tenant = this.options.tenantOf?.(app) ?? this.tenants.get(app);
    if (tenant) headers[TENANT_HEADER] = tenant;
    return headers;
  }

  /** An app's grids, asked of the app at this endpoint URL (routed by the headers). */
  readonly listGrids = async (app: string, signal: AbortSignal): Promise<readonly { name: string }[]> =>
    (await this.grids.listGrids({ app }, { signal, headers: this.gridHeaders(app) })).grids;

  /** The `subscribe` of core/feed.ts's gridFeedOpener. */
  readonly subscribe: SubscribeFn = (args: SubscribeArgs, signal: AbortSignal): AsyncIterable<SubscribeEvent> =>
    this.grids.subscribe(
      { app: args.app, grid: args.grid, resumeEpoch: args.resumeEpoch, resumeSeq: args.resumeSeq },
      { signal, headers: this.gridHeaders(args.app) },
    );
}
