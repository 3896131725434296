// The entry of dist/addin/signin.js, the page Office's dialog opens for sign-in (both the
// start and the issuer's redirect back); see taskpane/signin-page.ts.
import { officeGlobal } from "../taskpane/office.js";
import { runSigninPage } from "../taskpane/signin-page.js";

function show(text: string): void {
  const status = document.getElementById("signin-status");
  if (status !== null) status.textContent = text;
}

async function main(): Promise<void> {
  const office = officeGlobal();
  if (office === undefined) {
    show("Open this page from AeroGrid's task pane (Sign in).");
    return;
  }
  await office.onReady();
  await runSigninPage({
    href: window.location.href,
    storage: window.sessionStorage,
    fetch: window.fetch.bind(window),
    crypto: window.crypto,
    navigate: (url) => window.location.assign(url),
    reply: (message) => {
      show("Signed in: you can close this window.");
      office.context.ui.messageParent(message);
    },
  });
}

main().catch((error: unknown) => show(`Sign-in failed: ${error instanceof Error ? error.message : String(error)}`));
