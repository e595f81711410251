// Session page: follow the session's state and count the time left down.
//
// The server renders every state; this script only updates the live numbers (queue position,
// progress message, time left) and reloads the page when the state changes, so the markup for
// each state lives in one place, the template. Changes arrive as server-sent events
// (/session/events/, sent the moment the row changes); the status JSON is polled only while the
// event stream is down. When the session becomes ready and the person asked for it ("Open
// JupyterLab here when it is ready", remembered in this browser), the tab goes straight to it.
(function () {
  "use strict";

  var root = document.getElementById("session");
  if (!root || root.dataset.active !== "true") {
    return;
  }

  var statusUrl = root.dataset.statusUrl;
  var eventsUrl = root.dataset.eventsUrl;
  var renderedId = root.dataset.sessionId;
  var renderedState = root.dataset.state;
  var warningSeconds = Number(root.dataset.warningSeconds);
  // Without the event stream, polling is frequent while the state is about to change and slow
  // while the session runs: the countdown runs locally and each poll only corrects it.
  var fallbackPollMs = renderedState === "running" ? 5000 : 1000;
  // With the stream open, a rare poll only guards against a stream that went quiet.
  var streamPollMs = 60000;
  var pollMs = fallbackPollMs;
  var openWhenReadyKey = "jlp.openWhenReady";
  var openWhenReady = document.getElementById("open-when-ready");

  var countdown = document.getElementById("countdown");
  var warning = document.getElementById("time-warning");
  var message = document.getElementById("session-message");
  var queuePosition = document.getElementById("queue-position-number");
  var queueWait = document.getElementById("queue-wait-minutes");

  var deadline = null; // performance.now() at which no time is left
  var lastPoll = 0;
  var polling = false;

  function setRemaining(seconds) {
    deadline = seconds === null || seconds === "" ? null : performance.now() + Number(seconds) * 1000;
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
    if (deadline !== null && countdown) {
      var left = Math.max(0, Math.ceil((deadline - performance.now()) / 1000));
      var text = format(left);
      if (countdown.textContent !== text) {
        countdown.textContent = text;
      }
      if (warning) {
        warning.hidden = left > warningSeconds;
      }
      if (left === 0) {
        // The server stops the session at the deadline: look for it now.
        poll();
        return;
      }
    }
    if (performance.now() - lastPoll >= pollMs) {
      poll();
    }
  }

  function update(status) {
    setRemaining(status.remaining_seconds);
    if (message && status.message) {
      message.textContent = status.message;
    }
    if (queuePosition && status.queue_position !== null) {
      queuePosition.textContent = String(status.queue_position);
    }
    if (queueWait) {
      var minutes = status.queue_wait_minutes;
      queueWait.textContent =
        minutes === null ? "not known yet" : "about " + minutes + (minutes === 1 ? " minute" : " minutes");
    }
  }

  function wantsToOpen() {
    return Boolean(openWhenReady && openWhenReady.checked);
  }

  // One answer of the status call or the stream: a new state reloads the page (or opens
  // JupyterLab in this tab, when asked), else the live numbers are updated.
  function handle(status) {
    if (status.id !== renderedId || status.state !== renderedState) {
      if (status.id === renderedId && status.state === "running" && status.url && wantsToOpen()) {
        window.location.assign(status.url);
      } else {
        window.location.reload();
      }
      return;
    }
    update(status);
  }

  function poll() {
    if (polling || performance.now() - lastPoll < 1000) {
      return;
    }
    polling = true;
    lastPoll = performance.now();
    fetch(statusUrl, {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      cache: "no-store",
    })
      .then(function (response) {
        // Logged out (redirected to the login page) or the session is gone: the server
        // renders what to show instead.
        if (response.redirected || response.status === 404) {
          window.location.reload();
          return null;
        }
        return response.ok ? response.json() : null;
      })
      .then(function (status) {
        if (status) {
          handle(status);
        }
      })
      .catch(function () {
        // A network hiccup: the next poll tries again.
      })
      .finally(function () {
        polling = false;
      });
  }

  function listen() {
    if (!eventsUrl || !window.EventSource) {
      return;
    }
    var source = new EventSource(eventsUrl);
    source.addEventListener("open", function () {
      pollMs = streamPollMs;
    });
    source.addEventListener("status", function (event) {
      lastPoll = performance.now();
      handle(JSON.parse(event.data));
    });
    // Nothing left to follow (no session, suspended, signed out): the server says why.
    ["none", "refused"].forEach(function (name) {
      source.addEventListener(name, function () {
        source.close();
        window.location.reload();
      });
    });
    source.addEventListener("error", function () {
      // The browser reconnects by itself; until then, the status call is polled.
      pollMs = fallbackPollMs;
      if (source.readyState === EventSource.CLOSED) {
        window.setTimeout(listen, 5000);
      }
    });
    source.addEventListener("busy", function () {
      source.close();
      pollMs = fallbackPollMs;
    });
  }

  if (openWhenReady) {
    try {
      openWhenReady.checked = window.localStorage.getItem(openWhenReadyKey) === "1";
    } catch (e) {
      // Storage refused (private mode): the box starts unticked.
    }
    openWhenReady.addEventListener("change", function () {
      try {
        window.localStorage.setItem(openWhenReadyKey, openWhenReady.checked ? "1" : "0");
      } catch (e) {
        // Not remembered, still used for this page.
      }
    });
  }

  setRemaining(root.dataset.remaining);
  listen();
  window.setInterval(tick, 250);
  tick();
})();
