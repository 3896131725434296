"""The routing headers of the wire contract, named once.

A grid call carries the app it is for (and that app's tenant, since app names are
unique within a tenant only), so a gateway in front of many apps (Istio's in the cluster,
the devkit's local endpoint) can route it without reading the request. The Python
client sends them, the HTTP server lets browsers send them (CORS), the cloud renders
routes on them, and the Excel add-in's copy (`excel/src/transport.ts`) is checked against
these by a test.
"""

from __future__ import annotations

from typing import Final

#: The app a grid call is for.
APP_HEADER: Final = "x-aerogrid-app"
#: ... and its tenant.
TENANT_HEADER: Final = "x-aerogrid-tenant"
