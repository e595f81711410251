// Session page: follow the session as it changes, in place.
//
// The template renders the parts of every phase (data-show names the phases each belongs to);
// this script shows those of the phase at hand and fills in the figures. Changes arrive as
// server-sent events (/session/events/, sent the moment the row changes): no polling, no reload.
// Every answer counts at once: a refusal (suspended) shows why, an end (or no session any
// more) shows how it ended and stops the countdown, a lost connection shows "reconnecting"
// while the status call is retried with a growing delay. When the session becomes ready and
// the person ticked "Open when ready" (remembered in this browser, also by the launcher), this
// tab goes straight to JupyterLab.
(function () {
  "use strict";

  var root = document.getElementById("session");
  if (!root || root.dataset.active !== "true") {
    return;
  }

  var OPEN_WHEN_READY = "jlp.openWhenReady"; // localStorage: "1" when ticked
  var LAUNCHED = "jlp.launched"; // sessionStorage: set by the launcher as it launches
  var RETRY_MS = [1000, 2000, 4000, 8000, 15000];
  var BUSY_MS = 15000;
  // A stream that has not opened by then is held up on its way (a server or proxy that
  // buffers it): the status call stands in, this often, until it opens.
  var STALLED_MS = 5000;

  var statusUrl = root.dataset.statusUrl;
  var eventsUrl = root.dataset.eventsUrl;
  var sessionId = root.dataset.sessionId;
  var phase = root.dataset.phase;
  var warningSeconds = Number(root.dataset.warningSeconds);

  function byId(id) {
    return document.getElementById(id);
  }

  var badge = byId("session-state");
  var message = byId("session-message");
  var connection = byId("session-connection");
  var queuePosition = byId("queue-position-number");
  var queueWait = byId("queue-wait-minutes");
  var openLink = byId("open-jupyterlab");
  var countdown = byId("countdown");
  var expires = byId("session-expires");
  var warning = byId("time-warning");
  var library = byId("library-status");
  var stopButton = byId("stop-button");
  var endedSummary = byId("ended-summary");
  var endedMessage = byId("ended-message");
  var refusedMessage = byId("session-refused-message");
  var openWhenReady = byId("open-when-ready");
  // The page's polite announcer (base.html) when there is one; else the state line is the
  // polite region itself. One of them only: a change is announced once.
  var announcer = byId("live-status");
  var stateLine = byId("state-line");
  if (announcer && stateLine) {
    stateLine.removeAttribute("aria-live");
  }

  var deadline = null; // performance.now() at which no time is left
  var ticker = null;
  var source = null;
  var retryTimer = null;
  var stalledTimer = null;
  var failures = 0;
  var over = false; // ended, gone or refused: nothing more to follow

  // --- showing ---------------------------------------------------------------------------

  function show(key) {
    document.querySelectorAll("#session [data-show]").forEach(function (part) {
      part.hidden = part.dataset.show.split(" ").indexOf(key) < 0;
    });
  }

  function setText(element, text) {
    if (element && element.textContent !== text) {
      element.textContent = text;
    }
  }

  function setBadge(label, key) {
    setText(badge, label);
    badge.className = "state-badge state-" + key;
  }

  function announce(text) {
    if (announcer) {
      setText(announcer, text);
    }
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  function format(seconds) {
    var hours = Math.floor(seconds / 3600);
    var minutes = Math.floor((seconds % 3600) / 60);
    return pad(hours) + ":" + pad(minutes) + ":" + pad(seconds % 60);
  }

  function tick() {
    if (deadline === null) {
      return;
    }
    var left = Math.max(0, Math.ceil((deadline - performance.now()) / 1000));
    setText(countdown, format(left));
    if (warning) {
      warning.hidden = left > warningSeconds;
    }
  }

  // The countdown runs only while the session runs; any other phase stops it at once.
  function setRemaining(seconds) {
    if (seconds === null || seconds === undefined || seconds === "") {
      deadline = null;
      if (ticker !== null) {
        window.clearInterval(ticker);
        ticker = null;
      }
      return;
    }
    deadline = performance.now() + Number(seconds) * 1000;
    if (ticker === null) {
      ticker = window.setInterval(tick, 250);
    }
    tick();
  }

  function waitText(minutes) {
    if (minutes === null || minutes === undefined) {
      return "cannot be estimated";
    }
    return "about " + minutes + (minutes === 1 ? " minute" : " minutes");
  }

  function endedText(status) {
    var text = "This session has ended: " + status.state_label;
    if (status.reason_label) {
      text += " (" + status.reason_label + ")";
    }
    if (status.ended_at_display) {
      text += " at " + status.ended_at_display;
    }
    return text + ".";
  }

  // --- what each answer means ------------------------------------------------------------

  function wantsToOpen() {
    return Boolean(openWhenReady && openWhenReady.checked);
  }

  function render(status) {
    if (status.id !== sessionId) {
      // Another session (launched elsewhere) is the user's now: the page is about it.
      window.location.reload();
      return;
    }
    var before = phase;
    phase = status.phase;
    setBadge(status.state_label, status.active ? phase : status.state);
    setText(message, status.message || "Please wait…");
    setText(queuePosition, status.queue_position === null ? "" : String(status.queue_position));
    setText(queueWait, waitText(status.queue_wait_minutes));
    setText(stopButton, phase === "queued" ? "Leave the queue" : "Stop session");
    if (library) {
      setText(library, status.library_status || "");
    }
    if (status.url && openLink) {
      openLink.href = status.url;
    }
    if (expires) {
      setText(expires, status.expires_at_display || "");
      expires.setAttribute("datetime", status.expires_at || "");
    }
    setRemaining(phase === "running" ? status.remaining_seconds : null);
    if (!status.active) {
      finish();
      announce(endedText(status));
      setText(endedSummary, endedText(status));
      setText(endedMessage, status.message || "");
      show("ended");
      endedMessage.hidden = !status.message;
      return;
    }
    show(phase);
    if (phase !== before) {
      announce("Your session is " + status.state_label + ". " + (status.message || ""));
    }
    if (library && !status.library_status) {
      library.hidden = true;
    }
    if (phase === "running" && before !== "running" && status.url && wantsToOpen()) {
      window.location.assign(status.url);
    }
  }

  // Suspended, or no longer admitted: the portal refuses everything; say why, here.
  function refused(detail) {
    finish();
    setBadge("refused", "failed");
    setText(refusedMessage, detail || "The portal no longer lets you use this service.");
    announce(refusedMessage.textContent);
    show("refused");
  }

  // No session at all any more (the status call's 404).
  function gone() {
    finish();
    setBadge("ended", "stopped");
    setText(endedSummary, "This session has ended.");
    announce("This session has ended.");
    endedMessage.hidden = true;
    show("ended");
  }

  function finish() {
    over = true;
    setRemaining(null);
    if (source) {
      source.close();
      source = null;
    }
    if (retryTimer !== null) {
      window.clearTimeout(retryTimer);
      retryTimer = null;
    }
    stalled(false);
    connection.hidden = true;
  }

  function stalled(on) {
    if (stalledTimer !== null) {
      window.clearInterval(stalledTimer);
      stalledTimer = null;
    }
    if (on && !over) {
      stalledTimer = window.setInterval(check, STALLED_MS);
    }
  }

  // --- the status call: after the stream failed, until it can be opened again -------------

  function retryLater(ms) {
    connection.hidden = false;
    if (retryTimer === null && !over) {
      retryTimer = window.setTimeout(function () {
        retryTimer = null;
        check();
      }, ms);
    }
  }

  function failed() {
    var delay = RETRY_MS[Math.min(failures, RETRY_MS.length - 1)];
    failures += 1;
    retryLater(delay);
  }

  function check() {
    if (over) {
      return;
    }
    fetch(statusUrl, {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      cache: "no-store",
    })
      .then(function (response) {
        if (response.redirected) {
          // Signed out: the page goes to the sign-in page and back.
          window.location.reload();
          return;
        }
        if (response.status === 403) {
          // The middleware's refusal page says why (suspended, and how to appeal): go there.
          finish();
          window.location.reload();
          return;
        }
        if (response.status === 404) {
          gone();
          return;
        }
        if (!response.ok) {
          failed();
          return;
        }
        return response.json().then(function (status) {
          failures = 0;
          connection.hidden = true;
          render(status);
          if (!over) {
            listen();
          }
        });
      })
      .catch(failed);
  }

  // --- the event stream -------------------------------------------------------------------

  function listen() {
    if (over || source) {
      return;
    }
    if (!eventsUrl || !window.EventSource) {
      return;
    }
    var mine = new EventSource(eventsUrl);
    source = mine;
    var opened = false;
    window.setTimeout(function () {
      if (!opened && source === mine) {
        stalled(true);
      }
    }, STALLED_MS);
    source.addEventListener("open", function () {
      opened = true;
      stalled(false);
      failures = 0;
      connection.hidden = true;
    });
    source.addEventListener("status", function (event) {
      render(JSON.parse(event.data));
    });
    source.addEventListener("refused", function (event) {
      refused(JSON.parse(event.data).detail);
    });
    source.addEventListener("none", gone);
    // The stream's planned end (after a few minutes): open the next one at once.
    source.addEventListener("reconnect", function () {
      source.close();
      source = null;
      listen();
    });
    // Too many waits open for this person: look again a little later.
    source.addEventListener("busy", function () {
      source.close();
      source = null;
      retryLater(BUSY_MS);
      connection.hidden = true;
    });
    // The database went away meanwhile, or the connection broke: the status call finds out
    // what happened (403, 404, or nothing at all) and reopens the stream once it answers.
    ["unavailable", "error"].forEach(function (name) {
      mine.addEventListener(name, function () {
        if (source !== mine) {
          return; // closed on purpose already
        }
        stalled(false);
        source.close();
        source = null;
        connection.hidden = false;
        check();
      });
    });
  }

  // --- "Open when ready" ------------------------------------------------------------------

  var launched = false;
  try {
    launched = window.sessionStorage.getItem(LAUNCHED) === "1";
    window.sessionStorage.removeItem(LAUNCHED);
  } catch (e) {
    // Storage refused (private mode).
  }
  if (openWhenReady) {
    try {
      openWhenReady.checked = window.localStorage.getItem(OPEN_WHEN_READY) === "1";
    } catch (e) {
      // Storage refused: the box starts unticked.
    }
    openWhenReady.addEventListener("change", function () {
      try {
        window.localStorage.setItem(OPEN_WHEN_READY, openWhenReady.checked ? "1" : "0");
      } catch (e) {
        // Not remembered, still used for this page.
      }
    });
  }

  setRemaining(phase === "running" ? root.dataset.remaining : null);
  // Launched with the box ticked and the server already up when this page was made.
  if (phase === "running" && launched && wantsToOpen() && openLink && openLink.href) {
    window.location.assign(openLink.href);
    return;
  }
  listen();
})();
