// Sign in with a user name and password; the server sets the session cookie.
"use strict";

(() => {
  const t = i18n.t;
  const $ = (id) => document.getElementById(id);
  gridctl.publicPage("login.title");

  function next(home) {
    const wanted = new URLSearchParams(window.location.search).get("next");
    // Only a page of this site, never another origin.
    return wanted && /^\/ui\/[a-z]+$/.test(wanted) ? wanted : home;
  }

  // Already signed in: straight to the page.
  gridctl.api("/auth/session", { noRedirect: true }).then((s) => window.location.assign(next(s.home))).catch(() => {});

  $("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = event.submitter || $("login").querySelector("button");
    button.disabled = true;
    gridctl.say("status", "");
    try {
      const session = await gridctl.api("/auth/login", { method: "POST", noRedirect: true, body: {
        username: $("username").value.trim(), password: $("password").value,
      } });
      window.location.assign(next(session.home));
    } catch (error) {
      const text = error.status === 401 ? t("login.wrong")
        : error.status === 429 ? t("login.locked", { seconds: error.retryAfter || 30 })
        : t("common.error", { message: error.message });
      gridctl.say("status", text, true);
      $("password").value = "";
      $("password").focus();
    } finally {
      button.disabled = false;
    }
  });
})();
