// The task pane's end of sign-in: opens signin.html in Office's dialog and waits for the
// one message it sends (the token or an error). Closing the dialog is an error too.
import type { OfficeLike } from "./office.js";
import { parseSigninMessage, OAuthError, tokenOfMessage, type Token } from "./oauth.js";

// Office's DialogEventReceived codes (learn.microsoft.com, "Errors and events in the Office dialog box").
const DIALOG_EVENTS: Record<number, string> = {
  12002: "the sign-in page could not be loaded",
  12003: "the sign-in page must be https",
  12006: "the sign-in dialog was closed",
};

export function signInWithDialog(office: OfficeLike, url: string): Promise<Token> {
  return new Promise((resolve, reject) => {
    office.context.ui.displayDialogAsync(url, { height: 60, width: 30, promptBeforeOpen: false }, (result) => {
      if (result.status !== "succeeded") {
        reject(new OAuthError(`could not open the sign-in dialog: ${result.error?.message ?? "unknown error"}`));
        return;
      }
      const dialog = result.value;
      dialog.addEventHandler(office.EventType.DialogMessageReceived, (args) => {
        dialog.close();
        const message = parseSigninMessage(args.message ?? "");
        if (message.ok) resolve(tokenOfMessage(message));
        else reject(new OAuthError(message.error));
      });
      dialog.addEventHandler(office.EventType.DialogEventReceived, (args) => {
        const code = args.error ?? 0;
        reject(new OAuthError(DIALOG_EVENTS[code] ?? `the sign-in dialog failed (${code})`));
      });
    });
  });
}
