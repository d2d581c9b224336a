/*
 * A stand-in for TikTok's mini-game SDK (window.TTMinis) for the sandbox: it talks to the
 * emulator's browser routes, mounted by the game server at /ttminis/sandbox, instead of TikTok.
 *
 * Inside a real TikTok runtime the real SDK is already defined and this file does nothing.
 *
 *   TTMinis.game.login({success, fail, complete})            success({code})
 *   TTMinis.game.authorize({scope, success, fail, complete})  an Allow / Deny dialog
 *   TTMinis.game.setStorage / getStorage / removeStorage / clearStorage, and the *Sync variants
 *
 * The "device" (which TikTok account this phone is logged in as) is a random id kept in
 * sessionStorage: two windows are two players, and a reload keeps the same one.
 * window.TTMinisSandbox has helpers for the demo: rename(), revoke(), newDevice().
 *
 * The consent sheet brings its own styles (one <style id="ttminis-sandbox-style">, scoped to its
 * .ttminis-consent* / .ttminis-allow / .ttminis-deny classes), so it looks the same on any page.
 */
(function () {
  "use strict";
  if (window.TTMinis) return;

  var BASE = "/ttminis/sandbox";
  var DEVICE_KEY = "ttminis-sandbox-device";
  var DENIED = 10001; // a plausible error_code for "the user pressed Deny"

  function newId() {
    var bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }

  function device() {
    var id = sessionStorage.getItem(DEVICE_KEY);
    if (!id) {
      id = newId();
      sessionStorage.setItem(DEVICE_KEY, id);
    }
    return id;
  }

  function sdkError(code, message) {
    return { error: { error_code: code, error_msg: message, error_extra: {} } };
  }

  function post(path, body) {
    return fetch(BASE + path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(Object.assign({ device: device() }, body || {})),
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) throw new Error(data.error || "sandbox error " + response.status);
        return data;
      });
    });
  }

  function settle(options, promise) {
    promise.then(
      function (result) {
        if (options.success) options.success(result);
        if (options.complete) options.complete(result);
      },
      function (error) {
        var failure = error && error.error ? error : sdkError(-1, String(error && error.message));
        if (options.fail) options.fail(failure);
        if (options.complete) options.complete(failure);
      }
    );
  }

  var STYLE_ID = "ttminis-sandbox-style";
  var STYLE = [
    ".ttminis-consent { position: fixed; inset: 0; background: rgba(0, 0, 0, .6); display: flex;" +
      " align-items: flex-end; justify-content: center; z-index: 2147483000;" +
      ' font: 16px/normal system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }',
    ".ttminis-consent *, .ttminis-consent *::before, .ttminis-consent *::after { box-sizing: border-box; }",
    ".ttminis-consent-card { background: #fff; color: #161823; width: 100%; max-width: 420px;" +
      " border-radius: 16px 16px 0 0; padding: 20px 20px 26px; text-align: center; }",
    ".ttminis-consent-card p { margin: 1em 0; }",
    ".ttminis-consent-card .ttminis-consent-logo { font-size: 34px; }",
    ".ttminis-consent-card .ttminis-consent-title { font-weight: 700; font-size: 17px; margin: 6px 0; }",
    ".ttminis-consent-card .ttminis-consent-text { margin: 4px 0; }",
    ".ttminis-consent-card .ttminis-consent-scope, .ttminis-consent-card .ttminis-consent-note" +
      " { color: #8a8b91; font-size: 12px; }",
    ".ttminis-consent-card button { display: block; width: 100%; margin: 10px 0 0; padding: 12px;" +
      " font: inherit; font-weight: 700; border: 0; border-radius: 8px; cursor: pointer; }",
    ".ttminis-consent-card button:active { transform: scale(.97); }",
    ".ttminis-consent-card .ttminis-allow { background: #fe2c55; color: #fff; }",
    ".ttminis-consent-card .ttminis-deny { background: #f1f1f2; color: #161823; }",
  ].join("\n");

  /** Add the sheet's styles to the page, once. */
  function injectStyle() {
    if (document.getElementById(STYLE_ID)) return;
    var style = document.createElement("style");
    style.id = STYLE_ID;
    style.textContent = STYLE;
    (document.head || document.documentElement).appendChild(style);
  }

  function consentDialog(scope) {
    injectStyle();
    return new Promise(function (resolve) {
      var overlay = document.createElement("div");
      overlay.className = "ttminis-consent";
      overlay.setAttribute("role", "dialog");
      overlay.setAttribute("aria-modal", "true");
      overlay.innerHTML =
        '<div class="ttminis-consent-card">' +
        '<div class="ttminis-consent-logo">&#9834;</div>' +
        '<p class="ttminis-consent-title"></p>' +
        '<p class="ttminis-consent-text">Your public profile: display name and avatar.</p>' +
        '<p class="ttminis-consent-scope"></p>' +
        '<button type="button" class="ttminis-allow">Allow</button>' +
        '<button type="button" class="ttminis-deny">Deny</button>' +
        '<p class="ttminis-consent-note">Sandbox: no real TikTok account is used.</p>' +
        "</div>";
      overlay.querySelector(".ttminis-consent-title").textContent =
        (document.title || "This game") + " would like to access";
      overlay.querySelector(".ttminis-consent-scope").textContent = "scope: " + scope;
      function answer(allowed) {
        overlay.remove();
        resolve(allowed);
      }
      overlay.querySelector(".ttminis-allow").addEventListener("click", function () { answer(true); });
      overlay.querySelector(".ttminis-deny").addEventListener("click", function () { answer(false); });
      document.body.appendChild(overlay);
      overlay.querySelector(".ttminis-allow").focus();
    });
  }

  function storageKey(key) {
    return "ttminis-sandbox:" + device() + ":" + key;
  }

  var storage = {
    setStorageSync: function (key, data) {
      localStorage.setItem(storageKey(key), JSON.stringify(data));
    },
    getStorageSync: function (key) {
      var raw = localStorage.getItem(storageKey(key));
      return raw === null ? undefined : JSON.parse(raw);
    },
    removeStorageSync: function (key) {
      localStorage.removeItem(storageKey(key));
    },
    clearStorageSync: function () {
      var prefix = storageKey("");
      Object.keys(localStorage).forEach(function (key) {
        if (key.indexOf(prefix) === 0) localStorage.removeItem(key);
      });
    },
  };

  function asyncStorage(name, run) {
    return function (options) {
      options = options || {};
      settle(options, new Promise(function (resolve) { resolve(run(options)); }));
    };
  }

  window.TTMinis = {
    sandbox: true,
    game: {
      login: function (options) {
        options = options || {};
        settle(options, post("/login"));
      },
      authorize: function (options) {
        options = options || {};
        var scope = options.scope || "user.info.basic";
        settle(
          options,
          consentDialog(scope).then(function (allowed) {
            if (allowed) return post("/authorize");
            return post("/deny").then(function () {
              throw sdkError(DENIED, "user denied");
            });
          })
        );
      },
      setStorageSync: storage.setStorageSync,
      getStorageSync: storage.getStorageSync,
      removeStorageSync: storage.removeStorageSync,
      clearStorageSync: storage.clearStorageSync,
      setStorage: asyncStorage("setStorage", function (o) { storage.setStorageSync(o.key, o.data); return {}; }),
      getStorage: asyncStorage("getStorage", function (o) {
        var data = storage.getStorageSync(o.key);
        if (data === undefined) throw sdkError(-2, "no such key");
        return { data: data };
      }),
      removeStorage: asyncStorage("removeStorage", function (o) { storage.removeStorageSync(o.key); return {}; }),
      clearStorage: asyncStorage("clearStorage", function () { storage.clearStorageSync(); return {}; }),
    },
  };

  window.TTMinisSandbox = {
    get device() { return device(); },
    /** Switch this window to a brand-new TikTok account (a new player). */
    newDevice: function () {
      sessionStorage.setItem(DEVICE_KEY, newId());
    },
    /** Rename this account on TikTok's side (the game sees it at the next profile fetch). */
    rename: function (displayName) {
      return post("/profile", { display_name: displayName });
    },
    /** Remove the game from this account's TikTok settings: every grant and token revoked. */
    revoke: function () {
      return post("/revoke");
    },
  };
})();
