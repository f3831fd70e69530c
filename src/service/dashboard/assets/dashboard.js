// patchkeeper dashboard: live updates. The pages are complete without this script; with
// it, every event on the API's stream (/api/v1/events, authenticated by the session's
// HttpOnly cookie) re-renders the page's live region (#live) in place from the server, so
// the browser shows exactly what the server renders, without a reload. Forms outside the
// live region (the patch-request form) are never replaced under the user's hands.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var status = document.getElementById("live-status");
  if (!live || !window.EventSource || !window.fetch || !window.DOMParser) {
    return;
  }
  var timer = null;
  var busy = false;
  var again = false;
  var lastKind = "";

  function say(text) {
    if (status) {
      status.textContent = text;
    }
  }

  function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    fetch(window.location.href, {
      credentials: "same-origin",
      headers: { "Accept": "text/html" },
      redirect: "manual"
    })
      .then(function (r) {
        if (r.type === "opaqueredirect" || r.status === 0) {
          // Signed out (token revoked or expired): let the server say so.
          window.location.reload();
          return null;
        }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (!html) {
          return;
        }
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("live");
        if (fresh) {
          live.innerHTML = fresh.innerHTML;
          document.body.setAttribute("data-updated", String(Date.now()));
          say("Updated " + new Date().toLocaleTimeString() + (lastKind ? " (" + lastKind + ")" : ""));
        }
      })
      .catch(function () {
        say("Live updates paused: the server did not answer; retrying.");
      })
      .then(function () {
        busy = false;
        if (again) {
          again = false;
          schedule();
        }
      });
  }

  function schedule() {
    if (timer) {
      clearTimeout(timer);
    }
    // Events come in bursts (one per host): render once per burst.
    timer = setTimeout(refresh, 250);
  }

  var kinds = [
    "reconcile-started", "host-observed", "plan-ready", "batch-started", "host-applied",
    "host-failed", "host-rolled-back", "rollout-halted", "report-committed",
    "reconcile-finished", "commit-rejected", "request-submitted", "resync"
  ];
  var source = new EventSource("/api/v1/events");
  kinds.forEach(function (kind) {
    source.addEventListener(kind, function () {
      lastKind = kind;
      schedule();
    });
  });
  source.onopen = function () {
    document.body.setAttribute("data-live", "connected");
  };
  source.onerror = function () {
    document.body.setAttribute("data-live", "reconnecting");
  };
})();
