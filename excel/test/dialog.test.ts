// The task pane's end of sign-in, over a stand-in for Office.context.ui (a plain object:
// office-addin-mock models the load/sync proxies, not Office's enums and callbacks).
import { describe, expect, it } from "vitest";
import { signInWithDialog } from "../src/taskpane/dialog.js";
import type { DialogArgs, OfficeLike } from "../src/taskpane/office.js";

/** An Office whose dialog opens (or not) and lets the test fire its events. */
function mockOffice(opens = true) {
  const handlers = new Map<string, (args: DialogArgs) => void>();
  const state = { url: "", closed: 0 };
  const dialog = {
    addEventHandler: (type: string, handler: (args: DialogArgs) => void) => void handlers.set(type, handler),
    close: () => void (state.closed += 1),
  };
  const office: OfficeLike = {
    context: {
      ui: {
        displayDialogAsync: (url, _options, callback) => {
          state.url = url;
          callback(
            opens
              ? { status: "succeeded", value: dialog }
              : { status: "failed", value: dialog, error: { code: 12007, message: "A dialog is already open." } },
          );
        },
        messageParent: () => undefined,
      },
    },
    EventType: { DialogMessageReceived: "dialogMessageReceived", DialogEventReceived: "dialogEventReceived" },
    onReady: async () => undefined,
  };
  const fire = (type: string, args: DialogArgs) => handlers.get(type)?.(args);
  return { office, state, fire };
}

describe("signInWithDialog", () => {
  it("resolves with the token the dialog sends, and closes it", async () => {
    const { office, state, fire } = mockOffice();
    const token = signInWithDialog(office, "https://localhost:50051/addin/signin.html?issuer=x&client_id=y");
    fire("dialogMessageReceived", { message: JSON.stringify({ ok: true, token: "at" }) });
    await expect(token).resolves.toEqual({ accessToken: "at" });
    expect(state.url).toBe("https://localhost:50051/addin/signin.html?issuer=x&client_id=y");
    expect(state.closed).toBe(1);
  });

  it("resolves with the refresh token and lifetime when the dialog sends them", async () => {
    const { office, fire } = mockOffice();
    const token = signInWithDialog(office, "u");
    fire("dialogMessageReceived", { message: JSON.stringify({ ok: true, token: "at", refreshToken: "rt", expiresIn: 300 }) });
    await expect(token).resolves.toEqual({ accessToken: "at", refreshToken: "rt", expiresIn: 300 });
  });

  it("rejects with the dialog's error, a closed dialog, or a dialog that cannot open", async () => {
    const refused = mockOffice();
    const first = signInWithDialog(refused.office, "u");
    refused.fire("dialogMessageReceived", { message: JSON.stringify({ ok: false, error: "access denied" }) });
    await expect(first).rejects.toThrow("access denied");

    const closed = mockOffice();
    const second = signInWithDialog(closed.office, "u");
    closed.fire("dialogEventReceived", { error: 12006 });
    await expect(second).rejects.toThrow("the sign-in dialog was closed");

    await expect(signInWithDialog(mockOffice(false).office, "u")).rejects.toThrow(
      "could not open the sign-in dialog: A dialog is already open.",
    );
  });
});
