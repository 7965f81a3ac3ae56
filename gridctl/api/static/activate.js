// Set a password from a one-time activation link (/ui/activate#token=...), then go to the person's page.
"use strict";

(() => {
  const t = i18n.t;
  const $ = (id) => document.getElementById(id);
  gridctl.publicPage("activate.title");
  const token = new URLSearchParams(window.location.hash.slice(1)).get("token");
  if (!token) gridctl.say("status", t("activate.no_token"), true);

  $("activate").addEventListener("submit", async (event) => {
    event.preventDefault();
    const password = $("password").value;
    if (password.length < 12) { gridctl.say("status", t("activate.short"), true); $("password").focus(); return; }
    if (password !== $("confirm").value) { gridctl.say("status", t("activate.mismatch"), true); $("confirm").focus(); return; }
    try {
      const session = await gridctl.api("/auth/activate", { method: "POST", noRedirect: true, body: { token, password } });
      // The token is used up: drop it from the address bar and history.
      history.replaceState(null, "", "/ui/activate");
      window.location.assign(session.home);
    } catch (error) {
      gridctl.say("status", error.status === 410 ? t("activate.gone") : t("common.error", { message: error.message }), true);
    }
  });
})();
